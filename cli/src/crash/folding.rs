//! Folding a backtrace's recursion: a run of frames that repeats a cycle of
//! up to [`MAX_PERIOD`] return addresses (a function calling itself, or
//! `a` and `b` calling each other) is shown as one line, so that a stack
//! overflow's report still reaches the frames that started the recursion.
//! No allocation: the handler uses it.

/// The longest cycle folded.
pub(super) const MAX_PERIOD: usize = 4;

/// Takes a backtrace's return addresses, deepest last, and tells which
/// belong to a run of repeats.
#[derive(Default)]
pub(super) struct Folder {
    /// The last return addresses taken, latest first.
    recent: [usize; MAX_PERIOD],
    /// How many of `recent` hold one.
    known: usize,
    /// The number of the last frame taken (the first is 1).
    depth: usize,
    /// The cycle length of the run being folded; 0 outside runs.
    period: usize,
    /// Frames folded into that run.
    folded: usize,
}

/// What became of a frame: whether it ended a run, and whether it joins one.
pub(super) struct Step {
    /// The run the frame ended, if it did.
    pub(super) ended: Option<Run>,
    /// The frame is part of a run: it is not shown on its own.
    pub(super) folded: bool,
}

/// A run of frames that repeated the cycle of the `period` frames above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) period: usize,
    /// How many frames it has.
    pub(super) frames: usize,
    /// The number of its last frame.
    pub(super) last: usize,
    /// Its last return addresses, latest first: all of them when it is
    /// shorter than one cycle (see [`Run::frames_to_show`]).
    recent: [usize; MAX_PERIOD],
}

impl Run {
    /// A run shorter than its cycle repeated no cycle (`main` calling
    /// `dispatch` calling `handler` calling `dispatch` once): its frames,
    /// as `(number, return address)` in order, are shown as they are.
    /// Empty for a run worth folding.
    pub(super) fn frames_to_show(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let count = match self.frames < self.period {
            true => self.frames,
            false => 0,
        };
        (0..count).filter_map(move |index| {
            let address = self.recent.get(count - 1 - index)?;
            Some((self.last + 1 - count + index, *address))
        })
    }
}

impl Folder {
    /// Takes the next frame's return address.
    pub(super) fn push(&mut self, address: usize) -> Step {
        self.depth += 1;
        let mut ended = None;
        if self.period > 0 {
            if self.back(self.period) == Some(address) {
                self.folded += 1;
                self.remember(address);
                return Step {
                    ended: None,
                    folded: true,
                };
            }
            ended = self.end_run(self.depth - 1);
        }
        // The shortest cycle wins: `a a a` is a recursion of one frame.
        let period = (1..=MAX_PERIOD).find(|period| self.back(*period) == Some(address));
        self.remember(address);
        if let Some(period) = period {
            self.period = period;
            self.folded = 1;
        }
        Step {
            ended,
            folded: period.is_some(),
        }
    }

    /// Ends the walk: the run still being folded, if any.
    pub(super) fn finish(&mut self) -> Option<Run> {
        self.end_run(self.depth)
    }

    /// Ends the run being folded, whose last frame is number `last`.
    fn end_run(&mut self, last: usize) -> Option<Run> {
        let run = (self.period > 0).then_some(Run {
            period: self.period,
            frames: self.folded,
            last,
            recent: self.recent,
        });
        self.period = 0;
        self.folded = 0;
        run
    }

    /// The address `period` frames above the next one.
    fn back(&self, period: usize) -> Option<usize> {
        match period <= self.known {
            true => self.recent.get(period.checked_sub(1)?).copied(),
            false => None,
        }
    }

    fn remember(&mut self, address: usize) {
        self.recent.rotate_right(1);
        if let Some(latest) = self.recent.first_mut() {
            *latest = address;
        }
        self.known = (self.known + 1).min(MAX_PERIOD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a backtrace of `addresses` shows: `#N address` lines and
    /// `period x frames (to #last)` for folded runs.
    fn shown(addresses: &[usize]) -> Vec<String> {
        let mut folder = Folder::default();
        let mut lines = Vec::new();
        let show_run = |run: Run, lines: &mut Vec<String>| {
            let mut frames = run.frames_to_show().peekable();
            if frames.peek().is_none() {
                lines.push(format!(
                    "{} x {} (to #{})",
                    run.period, run.frames, run.last
                ));
            }
            lines.extend(frames.map(|(number, address)| format!("#{number} {address}")));
        };
        for (index, address) in addresses.iter().enumerate() {
            let step = folder.push(*address);
            if let Some(run) = step.ended {
                show_run(run, &mut lines);
            }
            if !step.folded {
                lines.push(format!("#{} {address}", index + 1));
            }
        }
        if let Some(run) = folder.finish() {
            show_run(run, &mut lines);
        }
        lines
    }

    #[test]
    fn a_recursion_of_one_frame_is_one_line() {
        assert_eq!(
            shown(&[7, 7, 7, 7, 2, 1]),
            ["#1 7", "1 x 3 (to #4)", "#5 2", "#6 1"]
        );
    }

    #[test]
    fn mutual_recursion_is_one_line_then_its_start() {
        // a b a b a b a, then start and main.
        assert_eq!(
            shown(&[10, 20, 10, 20, 10, 20, 10, 3, 1]),
            ["#1 10", "#2 20", "2 x 5 (to #7)", "#8 3", "#9 1"]
        );
        assert_eq!(
            shown(&[1, 2, 3, 4, 1, 2, 3, 4, 1, 9]),
            ["#1 1", "#2 2", "#3 3", "#4 4", "4 x 5 (to #9)", "#10 9"]
        );
    }

    #[test]
    fn a_repeat_shorter_than_its_cycle_is_shown_as_it_is() {
        assert_eq!(
            shown(&[5, 6, 5, 8, 9]),
            ["#1 5", "#2 6", "#3 5", "#4 8", "#5 9"]
        );
        assert_eq!(
            shown(&[5, 6, 7, 5, 6]),
            ["#1 5", "#2 6", "#3 7", "#4 5", "#5 6"]
        );
    }

    #[test]
    fn cycles_longer_than_the_longest_folded_are_not_folded() {
        let addresses = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5];
        assert_eq!(shown(&addresses).len(), addresses.len());
    }

    #[test]
    fn a_run_at_the_end_of_the_walk_is_shown() {
        assert_eq!(shown(&[4, 4, 4]), ["#1 4", "1 x 2 (to #3)"]);
    }
}
