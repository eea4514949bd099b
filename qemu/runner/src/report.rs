//! Reads the kernel's console report: every step from 1 to 13 must say PASS,
//! step 13's fault report must read as it should line by line, and the run
//! must end with `SCENARIO PASS` before the timeout.

/// The steps the kernels run, in order.
pub const STEPS: u32 = 13;

/// The step whose fault report [`fault_report_problems`] checks.
const FAULT_STEP: u32 = 13;

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
    problems.extend(fault_report_problems(console));
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

/// `name+0x<hex> [where]` as a report names a code address: `(name, offset, where)`.
fn symbolized(text: &str) -> Option<(&str, u64, &str)> {
    let (symbol, place) = text.strip_suffix(']')?.rsplit_once(" [")?;
    let (name, offset) = symbol.rsplit_once("+0x")?;
    let offset = u64::from_str_radix(offset, 16).ok()?;
    (!name.is_empty() && !place.is_empty()).then_some((name, offset, place))
}

/// Step 13's report, line by line: G's write to its read-only `g_banner`,
///
/// ```text
/// Write fault at 0x801000 (g.o: g_banner+0x0 in .rodata), pc g_poke+0x4 [g.o]
///   #1 g_run+0x10 [g.o]
///   #2 probe_access+0x34 [kernel]
///   #3 modload_test_kernel::scenario::fault_step::step13+0x485 [kernel]
///   ...
/// STEP 13 PASS ...
/// ```
///
/// The headline names the fault's kind, the address's module, symbol and
/// section, and the pc in `g_poke`; frames count up from 1, each a symbol
/// with an offset and a place; the first is `g_run` in G, the rest are kernel
/// functions, among them step 13's; the step's verdict follows the frames.
fn fault_report_problems(console: &str) -> Vec<String> {
    let lines: Vec<&str> = console.lines().map(|line| line.trim_end()).collect();
    let headlines: Vec<usize> = (0..lines.len())
        .filter(|&index| lines[index].contains("(g.o: g_banner+"))
        .collect();
    let &[start] = headlines.as_slice() else {
        return vec![format!(
            "step {FAULT_STEP}: {} fault reports at g_banner, want 1",
            headlines.len()
        )];
    };
    let mut problems = Vec::new();
    let mut problem = |text: String| problems.push(format!("step {FAULT_STEP}: {text}"));
    let headline = lines[start];
    let fields = headline
        .strip_prefix("Write fault at 0x")
        .and_then(|rest| rest.split_once(" (g.o: g_banner+0x0 in .rodata), pc "))
        .filter(|(address, _)| u64::from_str_radix(address, 16).is_ok())
        .and_then(|(_, pc)| symbolized(pc));
    match fields {
        Some(("g_poke", _, "g.o")) => {}
        _ => problem(format!(
            "headline {headline:?}, want `Write fault at 0x.. (g.o: g_banner+0x0 in .rodata), pc g_poke+0x.. [g.o]`"
        )),
    }
    let mut frames = Vec::new();
    let mut next = start + 1;
    while let Some(frame) = lines.get(next).and_then(|line| line.strip_prefix("  #")) {
        let depth = frames.len() + 1;
        match frame
            .split_once(' ')
            .filter(|(number, _)| number.parse() == Ok(depth))
            .and_then(|(_, place)| symbolized(place))
        {
            Some(named) => frames.push(named),
            None => problem(format!(
                "frame line {:?}, want `  #{depth} name+0x.. [place]`",
                lines[next]
            )),
        }
        next += 1;
    }
    match frames.first() {
        Some(("g_run", offset, "g.o")) if *offset > 0 => {}
        first => problem(format!("first frame {first:?}, want g_run+0x.. in g.o")),
    }
    if let Some(outside) = frames
        .iter()
        .skip(1)
        .find(|(_, _, place)| *place != "kernel")
    {
        problem(format!(
            "frame {outside:?} after g_run is not a kernel function"
        ));
    }
    if !frames
        .iter()
        .any(|(name, _, place)| *place == "kernel" && name.ends_with("::step13"))
    {
        problem(format!("no frame in the kernel's step13 among {frames:?}"));
    }
    let verdict = format!("STEP {FAULT_STEP} ");
    if !lines
        .get(next)
        .is_some_and(|line| line.starts_with(&verdict))
    {
        problem(format!(
            "the report is followed by {:?}, not the step's verdict",
            lines.get(next)
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(lines: &[&str]) -> String {
        lines.join("\n")
    }

    const FAULT_REPORT: [&str; 5] = [
        "Write fault at 0x801000 (g.o: g_banner+0x0 in .rodata), pc g_poke+0x4 [g.o]",
        "  #1 g_run+0x10 [g.o]",
        "  #2 probe_access+0x34 [kernel]",
        "  #3 modload_test_kernel::scenario::fault_step::step13+0x485 [kernel]",
        "  #4 modload_test_kernel::scenario::run+0x5e14 [kernel]",
    ];

    fn all_passing() -> Vec<String> {
        let mut lines = Vec::new();
        for step in 1..=STEPS {
            if step == FAULT_STEP {
                lines.extend(FAULT_REPORT.map(str::to_owned));
            }
            lines.push(format!("STEP {step} PASS name: detail"));
        }
        lines.push("SCENARIO PASS".to_owned());
        lines
    }

    /// The problems of a full passing report whose fault report line
    /// `index` is replaced by `line` (or removed, for `None`).
    fn with_fault_line(index: usize, line: Option<&str>) -> Vec<String> {
        let mut lines = all_passing();
        let at = lines
            .iter()
            .position(|line| line == FAULT_REPORT[0])
            .unwrap()
            + index;
        match line {
            Some(line) => lines[at] = line.to_owned(),
            None => {
                lines.remove(at);
            }
        }
        verdict(&lines.join("\n"), false).unwrap_err()
    }

    #[test]
    fn fault_reports_are_checked_line_by_line() {
        let cases: [(usize, Option<&str>, &str); 7] = [
            (
                0,
                Some("Read fault at 0x801000 (g.o: g_banner+0x0 in .rodata), pc g_poke+0x4 [g.o]"),
                "headline",
            ),
            (
                0,
                Some("Write fault at 0x801000 (g.o: g_banner+0x0 in .rodata), pc 0x800004"),
                "headline",
            ),
            (1, Some("  #1 0x800020"), "frame line"),
            (1, Some("  #1 g_value+0x10 [g.o]"), "first frame"),
            (2, Some("  #3 probe_access+0x34 [kernel]"), "frame line"),
            (3, None, "no frame in the kernel's step13"),
            (0, None, "0 fault reports"),
        ];
        for (index, line, want) in cases {
            let problems = with_fault_line(index, line);
            assert!(
                problems.iter().any(|problem| problem.contains(want)),
                "{line:?}: {problems:?}"
            );
        }
        let mut lines = all_passing();
        let at = lines
            .iter()
            .position(|line| line == FAULT_REPORT[4])
            .unwrap();
        lines.insert(at + 1, "unrelated".to_owned());
        let problems = verdict(&lines.join("\n"), false).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains("not the step's verdict")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_full_report_passes() {
        let lines = all_passing();
        let text = lines.join("\r\n");
        assert_eq!(verdict(&text, false), Ok("13 of 13 steps".to_owned()));
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
