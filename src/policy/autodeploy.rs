//! When auto-deploy may deploy a branch's head: its CI passed (every required context, or every
//! context reported when none are named), the commit is not already deployed there, and nothing holds
//! the environment (a lock, a freeze or window, approvals). Unlike GitHub's `required_contexts`, an
//! empty list does not mean "deploy without CI": a commit nothing reported on is never green.

use crate::domain::{CheckState, Checks};

/// What a commit's checks say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Green,
    Pending,
    Red,
    /// No status and no check run reported at all: auto-deploy waits for CI to say something.
    NoneReported,
}

/// `required`: `[apps.*] required_contexts` (`None` or `Some([])`: every context reported, and at
/// least one). A context reported twice (a re-run) counts by its worst state.
pub fn verdict(checks: &Checks, required: Option<&[String]>) -> Verdict {
    let state_of = |name: &str| {
        let states: Vec<CheckState> = checks
            .contexts
            .iter()
            .filter(|(context, _)| context == name)
            .map(|(_, state)| *state)
            .collect();
        if states.contains(&CheckState::Failed) {
            Some(CheckState::Failed)
        } else if states.contains(&CheckState::Pending) {
            Some(CheckState::Pending)
        } else {
            states.first().copied()
        }
    };
    if checks.contexts.is_empty() {
        return Verdict::NoneReported;
    }
    let names: Vec<&str> = match required {
        Some(required) if !required.is_empty() => required.iter().map(String::as_str).collect(),
        _ => checks.contexts.iter().map(|(c, _)| c.as_str()).collect(),
    };
    let states: Vec<Option<CheckState>> = names.iter().map(|n| state_of(n)).collect();
    if states.contains(&Some(CheckState::Failed)) {
        Verdict::Red
    } else if states.iter().all(|s| *s == Some(CheckState::Passed)) {
        Verdict::Green
    } else {
        Verdict::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(list: &[(&str, CheckState)]) -> Checks {
        Checks {
            contexts: list.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
        }
    }

    #[test]
    fn green_means_every_required_context_passed() {
        use CheckState::*;
        let ci = vec!["ci".to_string()];
        for (list, required, expected) in [
            (vec![], None, Verdict::NoneReported),
            (vec![("ci", Passed)], None, Verdict::Green),
            (
                vec![("ci", Passed), ("lint", Pending)],
                None,
                Verdict::Pending,
            ),
            (vec![("ci", Passed), ("lint", Failed)], None, Verdict::Red),
            (
                vec![("ci", Passed), ("lint", Failed)],
                Some(&ci),
                Verdict::Green,
            ),
            (vec![("lint", Passed)], Some(&ci), Verdict::Pending),
            (
                vec![("ci", Passed), ("ci", Failed)],
                Some(&ci),
                Verdict::Red,
            ),
            (vec![], Some(&vec![]), Verdict::NoneReported),
            (vec![], Some(&ci), Verdict::NoneReported),
            (vec![("ci", Passed)], Some(&vec![]), Verdict::Green),
            (
                vec![("ci", Passed), ("lint", Failed)],
                Some(&vec![]),
                Verdict::Red,
            ),
            (
                vec![("ci", Passed), ("lint", Pending)],
                Some(&vec![]),
                Verdict::Pending,
            ),
        ] {
            assert_eq!(
                verdict(&checks(&list), required.map(Vec::as_slice)),
                expected,
                "{list:?} {required:?}"
            );
        }
    }
}
