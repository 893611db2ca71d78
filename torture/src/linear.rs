//! The linearizability checker: Wing & Gong's search with Lowe's memoisation (as in Porcupine),
//! over the whole history of the [`model`](crate::model). Pure.
//!
//! A history is a list of operations, each with its call time and, if it returned, its return
//! time; an operation with an unknown outcome never returns (it may take effect at any point
//! after its call, or never). The search linearizes, one at a time, operations whose call comes
//! before every pending return, backtracking when it meets the return of an operation it could
//! not place; `(linearized set, state)` pairs already explored are skipped. The search is
//! iterative (an explicit stack) and bounded by a step budget.
use crate::model::{step, Input, Output, State};
use std::collections::HashSet;

/// One operation of a history.
#[derive(Clone, Debug)]
pub struct Op {
    /// Which client ran it.
    pub client: usize,
    pub input: Input,
    pub output: Output,
    /// When it was invoked (ns since the run began).
    pub call: u64,
    /// When it returned; `None` when its outcome is unknown.
    pub ret: Option<u64>,
}

/// What the checker found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the history: the operation that could not be placed, and how far the
    /// best attempt got.
    Violation {
        op: usize,
        linearized: usize,
        of: usize,
    },
    /// The budget ran out before an answer.
    GaveUp {
        steps: u64,
    },
}

const NONE: usize = usize::MAX;

struct List {
    prev: Vec<usize>,
    next: Vec<usize>,
}

impl List {
    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NONE {
            self.prev[n] = p;
        }
    }
    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NONE {
            self.prev[n] = e;
        }
    }
}

/// The set of linearized operations, indexed in call order: all of `0..m`, plus `above` (indices
/// past `m`; `m` itself is not linearized). Mostly a prefix, so its memo key stays small however
/// long the history (a bitset key made the memo O(n²) in memory).
#[derive(Default)]
struct Linearized {
    m: usize,
    above: std::collections::BTreeSet<usize>,
}

impl Linearized {
    fn set(&mut self, i: usize) {
        if i == self.m {
            self.m += 1;
            while self.above.remove(&self.m) {
                self.m += 1;
            }
        } else {
            self.above.insert(i);
        }
    }

    fn clear(&mut self, i: usize) {
        if i < self.m {
            self.above.extend(i + 1..self.m);
            self.m = i;
        } else {
            self.above.remove(&i);
        }
    }

    /// The memo key of this set with `i` added.
    fn key_with(&self, i: usize) -> (usize, Vec<usize>) {
        let mut above: Vec<usize> = self.above.iter().copied().collect();
        let mut m = self.m;
        if i == m {
            m += 1;
            while above.first() == Some(&m) {
                above.remove(0);
                m += 1;
            }
        } else if let Err(at) = above.binary_search(&i) {
            above.insert(at, i);
        }
        (m, above)
    }

    fn key(&self) -> (usize, Vec<usize>) {
        (self.m, self.above.iter().copied().collect())
    }
}

/// Checks `ops` from the all-absent state over `keys` keys.
pub fn check(ops: &[Op], keys: usize, budget: u64) -> Verdict {
    // In call order (the linearized set is then mostly a prefix); violations are reported by
    // the caller's index.
    let mut by_call: Vec<usize> = (0..ops.len()).collect();
    by_call.sort_by_key(|&i| (ops[i].call, i));
    let sorted: Vec<Op> = by_call.iter().map(|&i| ops[i].clone()).collect();
    match check_sorted(&sorted, keys, budget) {
        Verdict::Violation { op, linearized, of } => Verdict::Violation {
            op: by_call[op],
            linearized,
            of,
        },
        v => v,
    }
}

fn check_sorted(ops: &[Op], keys: usize, budget: u64) -> Verdict {
    let n = ops.len();
    // Events 1..=2n (0 is the head): call of op i at 2i+1, its return at 2i+2.
    let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        order.push((o.call, 0, 2 * i + 1));
        order.push((o.ret.unwrap_or(u64::MAX), 1, 2 * i + 2));
    }
    // Calls before returns at equal times: the permissive reading.
    order.sort_unstable();
    let mut list = List {
        prev: vec![NONE; 2 * n + 1],
        next: vec![NONE; 2 * n + 1],
    };
    let mut last = 0;
    for &(_, _, e) in &order {
        list.next[last] = e;
        list.prev[e] = last;
        last = e;
    }
    let op_of = |e: usize| (e - 1) / 2;
    let is_call = |e: usize| e % 2 == 1;

    let mut state: State = vec![None; keys];
    let mut done = Linearized::default();
    let mut seen: HashSet<((usize, Vec<usize>), State)> = HashSet::new();
    // (call event, state before it, other candidate states still to try)
    let mut stack: Vec<(usize, State, Vec<State>)> = Vec::new();
    let (mut best, mut stuck) = (0usize, 0usize);
    let mut steps = 0u64;
    let mut e = list.next[0];
    let lift = |list: &mut List, e: usize| {
        list.unlink(e);
        list.unlink(e + 1);
    };
    let unlift = |list: &mut List, e: usize| {
        list.relink(e + 1);
        list.relink(e);
    };
    while e != NONE {
        steps += 1;
        if steps > budget {
            return Verdict::GaveUp { steps };
        }
        if is_call(e) {
            let i = op_of(e);
            let bits = done.key_with(i);
            let mut cands: Vec<State> = step(&state, &ops[i].input, &ops[i].output)
                .into_iter()
                .filter(|s| !seen.contains(&(bits.clone(), s.clone())))
                .collect();
            if let Some(next) = cands.pop() {
                seen.insert((bits, next.clone()));
                stack.push((e, std::mem::replace(&mut state, next), cands));
                done.set(i);
                lift(&mut list, e);
                if stack.len() > best {
                    best = stack.len();
                }
                e = list.next[0];
            } else {
                e = list.next[e];
            }
            continue;
        }
        // The return of an operation not yet placed: undo the last choice.
        if stack.len() >= best {
            stuck = op_of(e);
        }
        loop {
            let Some((c, before, mut rest)) = stack.pop() else {
                return Verdict::Violation {
                    op: stuck,
                    linearized: best,
                    of: n,
                };
            };
            let i = op_of(c);
            unlift(&mut list, c);
            if let Some(other) = rest.pop() {
                // Same operation, another possible effect.
                let key = (done.key(), other.clone());
                if seen.insert(key) {
                    stack.push((c, before, rest));
                    state = other;
                    lift(&mut list, c);
                    e = list.next[0];
                    break;
                }
                stack.push((c, before, rest));
                lift(&mut list, c);
                continue;
            }
            done.clear(i);
            state = before;
            e = list.next[c];
            break;
        }
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Input as I, Output as O};

    fn op(client: usize, input: I, output: O, call: u64, ret: Option<u64>) -> Op {
        Op {
            client,
            input,
            output,
            call,
            ret,
        }
    }
    fn put(k: usize, v: u64) -> I {
        I::Put {
            key: k,
            value: v,
            overwrite: true,
        }
    }
    fn get(k: usize) -> I {
        I::Get { key: k }
    }

    #[test]
    fn concurrent_writes_and_reads_that_fit_are_accepted() {
        let h = vec![
            op(0, put(0, 1), O::Ok, 0, Some(10)),
            op(1, put(0, 2), O::Ok, 5, Some(15)),
            op(2, get(0), O::Value(Some(1)), 12, Some(20)),
            op(2, get(0), O::Value(Some(1)), 21, Some(22)),
        ];
        assert_eq!(check(&h, 1, 1_000_000), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_is_rejected() {
        // put 1 completes, then put 2 completes, then a read returns 1: impossible.
        let h = vec![
            op(0, put(0, 1), O::Ok, 0, Some(10)),
            op(0, put(0, 2), O::Ok, 11, Some(20)),
            op(1, get(0), O::Value(Some(1)), 21, Some(30)),
        ];
        assert!(matches!(
            check(&h, 1, 1_000_000),
            Verdict::Violation { op: 2, .. }
        ));
    }

    #[test]
    fn a_failed_write_must_never_be_read_and_an_unknown_one_may_be() {
        // A write whose failure was reported is left out of the history: reading it is a bug.
        let h = vec![op(1, get(0), O::Value(Some(5)), 21, Some(30))];
        assert!(matches!(check(&h, 1, 1000), Verdict::Violation { .. }));
        // An unknown write may show up later, or never.
        let mut h = vec![
            op(0, put(0, 5), O::Unknown, 0, None),
            op(1, get(0), O::NotFound, 1, Some(2)),
            op(1, get(0), O::Value(Some(5)), 21, Some(30)),
        ];
        assert_eq!(check(&h, 1, 1000), Verdict::Linearizable);
        h.push(op(1, get(0), O::NotFound, 31, Some(32)));
        assert!(matches!(check(&h, 1, 1000), Verdict::Violation { .. }));
    }

    #[test]
    fn an_undone_delete_is_rejected() {
        let h = vec![
            op(0, put(0, 1), O::Ok, 0, Some(1)),
            op(0, I::Rm { key: 0 }, O::Ok, 2, Some(3)),
            op(1, get(0), O::Value(Some(1)), 4, Some(5)),
        ];
        assert!(matches!(check(&h, 1, 1000), Verdict::Violation { .. }));
    }

    #[test]
    fn renames_and_listings() {
        let h = vec![
            op(0, put(0, 1), O::Ok, 0, Some(1)),
            op(
                0,
                I::Mv {
                    from: 0,
                    to: 1,
                    replace: false,
                },
                O::Ok,
                2,
                Some(10),
            ),
            op(1, I::Ls, O::Names(0b01), 3, Some(4)),
            op(1, I::Ls, O::Names(0b10), 5, Some(6)),
            op(2, get(1), O::Value(Some(1)), 11, Some(12)),
        ];
        assert_eq!(check(&h, 2, 1000), Verdict::Linearizable);
        let mut bad = h.clone();
        // The listing went back to the old name after the new one was seen.
        bad.push(op(1, I::Ls, O::Names(0b01), 7, Some(8)));
        assert!(matches!(check(&bad, 2, 1000), Verdict::Violation { .. }));
    }

    #[test]
    fn the_linearized_set_is_a_prefix_and_exceptions() {
        let mut l = Linearized::default();
        l.set(1);
        assert_eq!(l.key(), (0, vec![1]));
        assert_eq!(l.key_with(0), (2, vec![]));
        l.set(0);
        assert_eq!(l.key(), (2, vec![]));
        l.set(5);
        l.clear(0);
        assert_eq!(l.key(), (0, vec![1, 5]));
        l.set(0);
        l.clear(5);
        assert_eq!(l.key(), (2, vec![]));
    }

    #[test]
    fn a_long_sequential_history_is_checked_quickly() {
        let n = 200_000u64;
        let h: Vec<Op> = (0..n)
            .map(|v| op(0, put(0, v), O::Ok, 10 * v, Some(10 * v + 5)))
            .collect();
        let t0 = std::time::Instant::now();
        assert_eq!(check(&h, 1, 10_000_000), Verdict::Linearizable);
        assert!(t0.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn many_concurrent_clients_finish_within_budget() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut state = [None; 4];
        let mut h = Vec::new();
        let mut t = 0u64;
        // A sequential history made concurrent by widening each op's interval.
        for v in 0..400u64 {
            let k = rng.usize(0..4);
            let (input, output) = match rng.u8(0..3) {
                0 => {
                    state[k] = Some(v);
                    (put(k, v), O::Ok)
                }
                1 => (get(k), O::Value(state[k])),
                _ => {
                    let o = if state[k].is_some() {
                        O::Ok
                    } else {
                        O::NotFound
                    };
                    state[k] = None;
                    (I::Rm { key: k }, o)
                }
            };
            h.push(op(
                v as usize % 5,
                input,
                output,
                t,
                Some(t + 10 + rng.u64(0..5)),
            ));
            t += 10;
        }
        assert_eq!(check(&h, 4, 5_000_000), Verdict::Linearizable);
    }
}
