//! The namespace model the checker runs: a flat directory of names, each absent or present.
//! File names hold one written value (a write id ≥ 1); directory names hold the marker
//! [`DIR`] when present (the harness uses the first names for files and the rest for
//! directories, and never mixes them). Pure; nondeterministic only for operations whose outcome
//! is unknown (they may or may not have taken effect).

/// A state: per name, the write id it holds (or [`DIR`] for a directory).
pub type State = Vec<Option<u64>>;

/// What a present directory name holds.
pub const DIR: u64 = 0;

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Store write `value` at `key` (replacing only with `overwrite`).
    Put {
        key: usize,
        value: u64,
        overwrite: bool,
    },
    /// Read `key`.
    Get { key: usize },
    /// Delete `key`.
    Rm { key: usize },
    /// Rename `from` to `to` (replacing a file there only with `replace`).
    Mv {
        from: usize,
        to: usize,
        replace: bool,
    },
    /// List the directory.
    Ls,
    /// The length of the file at `key`.
    Stat { key: usize },
    /// Make directory `key` (no parents).
    Mkdir { key: usize },
    /// Remove the (empty) directory `key`.
    Rmdir { key: usize },
}

/// What the client was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Done.
    Ok,
    /// A read: the write id read, or `None` (not found).
    Value(Option<u64>),
    /// The path did not exist.
    NotFound,
    /// The path existed (and was not replaced).
    Exists,
    /// A listing: bit `k` set when key `k` was listed.
    Names(u64),
    /// A file's length, or `None` (not found).
    Len(Option<u64>),
    /// No answer (a timeout, the cluster unreachable): it may or may not have happened.
    Unknown,
}

/// The states `input` answered with `output` can lead to from `s` (none: impossible).
pub fn step(s: &State, input: &Input, output: &Output) -> Vec<State> {
    let with = |f: &dyn Fn(&mut State)| {
        let mut n = s.clone();
        f(&mut n);
        n
    };
    match (input, output) {
        (
            Input::Put {
                key,
                value,
                overwrite,
            },
            out,
        ) => {
            let allowed = *overwrite || s[*key].is_none();
            let done = || with(&|n: &mut State| n[*key] = Some(*value));
            match out {
                Output::Ok if allowed => vec![done()],
                Output::Exists if !allowed => vec![s.clone()],
                Output::Unknown if allowed => vec![s.clone(), done()],
                Output::Unknown => vec![s.clone()],
                _ => vec![],
            }
        }
        (Input::Get { key }, Output::Value(v)) if s[*key] == *v => vec![s.clone()],
        (Input::Get { key }, Output::NotFound) if s[*key].is_none() => vec![s.clone()],
        (Input::Get { .. }, Output::Unknown) => vec![s.clone()],
        (Input::Rm { key }, out) => {
            let gone = || with(&|n: &mut State| n[*key] = None);
            match (out, s[*key].is_some()) {
                (Output::Ok, true) => vec![gone()],
                (Output::NotFound, false) => vec![s.clone()],
                (Output::Unknown, true) => vec![s.clone(), gone()],
                (Output::Unknown, false) => vec![s.clone()],
                _ => vec![],
            }
        }
        (Input::Mv { from, to, replace }, out) => {
            let moved = || {
                with(&|n: &mut State| {
                    n[*to] = n[*from];
                    n[*from] = None;
                })
            };
            let (src, dst) = (s[*from].is_some(), s[*to].is_some());
            let allowed = src && (*replace || !dst);
            match out {
                Output::Ok if allowed => vec![moved()],
                Output::NotFound if !src => vec![s.clone()],
                Output::Exists if src && dst && !*replace => vec![s.clone()],
                Output::Unknown if allowed => vec![s.clone(), moved()],
                Output::Unknown => vec![s.clone()],
                _ => vec![],
            }
        }
        (Input::Ls, Output::Names(mask)) => {
            let have = s
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_some())
                .fold(0u64, |m, (k, _)| m | 1 << k);
            if have == *mask {
                vec![s.clone()]
            } else {
                vec![]
            }
        }
        (Input::Ls, Output::Unknown) => vec![s.clone()],
        (Input::Stat { key }, Output::Len(len)) => {
            let have = s[*key]
                .filter(|v| *v != DIR)
                .map(crate::workload::content_len);
            if have == *len && (len.is_some() || s[*key].is_none()) {
                vec![s.clone()]
            } else {
                vec![]
            }
        }
        (Input::Stat { .. }, Output::Unknown) => vec![s.clone()],
        (Input::Mkdir { key }, out) => {
            let made = || with(&|n: &mut State| n[*key] = Some(DIR));
            match (out, s[*key].is_some()) {
                (Output::Ok, false) => vec![made()],
                (Output::Exists, true) => vec![s.clone()],
                (Output::Unknown, false) => vec![s.clone(), made()],
                (Output::Unknown, true) => vec![s.clone()],
                _ => vec![],
            }
        }
        (Input::Rmdir { key }, out) => {
            let gone = || with(&|n: &mut State| n[*key] = None);
            match (out, s[*key] == Some(DIR)) {
                (Output::Ok, true) => vec![gone()],
                (Output::NotFound, false) if s[*key].is_none() => vec![s.clone()],
                (Output::Unknown, true) => vec![s.clone(), gone()],
                (Output::Unknown, false) => vec![s.clone()],
                _ => vec![],
            }
        }
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        let s: State = vec![None, Some(7)];
        let put = |key, overwrite| Input::Put {
            key,
            value: 9,
            overwrite,
        };
        assert_eq!(
            step(&s, &put(0, false), &Output::Ok),
            vec![vec![Some(9), Some(7)]]
        );
        assert!(step(&s, &put(1, false), &Output::Ok).is_empty());
        assert_eq!(step(&s, &put(1, false), &Output::Exists), vec![s.clone()]);
        assert_eq!(step(&s, &put(1, true), &Output::Unknown).len(), 2);
        assert_eq!(
            step(&s, &Input::Get { key: 1 }, &Output::Value(Some(7))),
            vec![s.clone()]
        );
        assert!(step(&s, &Input::Get { key: 1 }, &Output::Value(Some(8))).is_empty());
        assert!(step(&s, &Input::Get { key: 1 }, &Output::NotFound).is_empty());
        let mv = Input::Mv {
            from: 1,
            to: 0,
            replace: false,
        };
        assert_eq!(step(&s, &mv, &Output::Ok), vec![vec![Some(7), None]]);
        assert!(step(&s, &mv, &Output::NotFound).is_empty());
        assert_eq!(step(&s, &Input::Ls, &Output::Names(0b10)), vec![s.clone()]);
        assert!(step(&s, &Input::Ls, &Output::Names(0b11)).is_empty());
        assert_eq!(
            step(&s, &Input::Rm { key: 0 }, &Output::NotFound),
            vec![s.clone()]
        );
        let len = crate::workload::content_len(7);
        assert_eq!(
            step(&s, &Input::Stat { key: 1 }, &Output::Len(Some(len))),
            vec![s.clone()]
        );
        assert!(step(&s, &Input::Stat { key: 1 }, &Output::Len(Some(len + 1))).is_empty());
        assert_eq!(
            step(&s, &Input::Stat { key: 0 }, &Output::Len(None)),
            vec![s.clone()]
        );
        let d: State = vec![None, None];
        let made = step(&d, &Input::Mkdir { key: 1 }, &Output::Ok);
        assert_eq!(made, vec![vec![None, Some(DIR)]]);
        assert!(step(&made[0], &Input::Mkdir { key: 1 }, &Output::Ok).is_empty());
        assert_eq!(
            step(&made[0], &Input::Mkdir { key: 1 }, &Output::Exists),
            made
        );
        assert_eq!(
            step(&made[0], &Input::Rmdir { key: 1 }, &Output::Ok),
            vec![d.clone()]
        );
        assert!(step(&d, &Input::Rmdir { key: 1 }, &Output::Ok).is_empty());
        assert_eq!(
            step(&s, &Input::Rm { key: 1 }, &Output::Ok),
            vec![vec![None, None]]
        );
    }
}
