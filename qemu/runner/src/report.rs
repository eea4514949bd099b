//! Reads the kernel's console report: every step from 1 to 12 must say PASS,
//! and the run must end with `SCENARIO PASS` before the timeout.

/// The steps the kernels run, in order.
pub const STEPS: u32 = 12;

/// `Ok(summary)` if the report shows every step passing, else each problem.
pub fn verdict(console: &str, timed_out: bool) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    let mut passed = 0;
    for step in 1..=STEPS {
        let pass = format!("STEP {step} PASS ");
        let fail = format!("STEP {step} FAIL ");
        let lines: Vec<&str> = console
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with(&pass) || line.starts_with(&fail))
            .collect();
        match lines.as_slice() {
            [] => problems.push(format!("step {step} is missing")),
            [line] if line.starts_with(&pass) => passed += 1,
            [line] => problems.push((*line).to_owned()),
            _ => problems.push(format!("step {step} reported {} times", lines.len())),
        }
    }
    if timed_out {
        problems.push("the kernel did not finish before the timeout".to_owned());
    }
    let unexpected = console
        .lines()
        .filter(|line| line.contains("UNEXPECTED") || line.contains("KERNEL PANIC"));
    problems.extend(unexpected.map(|line| line.trim().to_owned()));
    if !console.lines().any(|line| line.trim() == "SCENARIO PASS") {
        problems.push("no `SCENARIO PASS` line".to_owned());
    }
    if problems.is_empty() {
        Ok(format!("{passed} of {STEPS} steps"))
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(lines: &[&str]) -> String {
        lines.join("\n")
    }

    fn all_passing() -> Vec<String> {
        let mut lines: Vec<String> = (1..=STEPS)
            .map(|step| format!("STEP {step} PASS name: detail"))
            .collect();
        lines.push("SCENARIO PASS".to_owned());
        lines
    }

    #[test]
    fn a_full_report_passes() {
        let lines = all_passing();
        let text = lines.join("\r\n");
        assert_eq!(verdict(&text, false), Ok("12 of 12 steps".to_owned()));
    }

    #[test]
    fn failed_missing_and_repeated_steps_fail() {
        let mut lines = all_passing();
        lines[2] = "STEP 3 FAIL modules outlive the loader: c_run: got 1".to_owned();
        lines.remove(4);
        lines.push("STEP 1 PASS again".to_owned());
        let problems = verdict(&lines.join("\n"), false).unwrap_err();
        assert_eq!(
            problems,
            [
                "step 1 reported 2 times",
                "STEP 3 FAIL modules outlive the loader: c_run: got 1",
                "step 5 is missing",
            ]
        );
    }

    #[test]
    fn timeouts_panics_and_a_missing_verdict_fail() {
        let mut lines = all_passing();
        lines.pop();
        lines.push("UNEXPECTED page fault at 0x0".to_owned());
        let problems = verdict(
            &report(&lines.iter().map(String::as_str).collect::<Vec<_>>()),
            true,
        )
        .unwrap_err();
        assert_eq!(
            problems,
            [
                "the kernel did not finish before the timeout",
                "UNEXPECTED page fault at 0x0",
                "no `SCENARIO PASS` line",
            ]
        );
    }
}
