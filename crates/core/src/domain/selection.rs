//! Choosing targets: how many a mode asks for, and which ones, reproducibly from a seed.

use rand::{SeedableRng, seq::index};
use rand_chacha::ChaCha8Rng;

use crate::api::podkill::SelectionMode;

/// How many of `matched` candidates a round takes.
///
/// `percent` rounds up, so any percentage of a non-empty set takes at least one: a PodKill that
/// silently killed nothing would prove nothing. `fixed` takes at most what matched.
pub fn target_count(mode: SelectionMode, value: Option<u32>, matched: usize) -> usize {
    let wanted = match mode {
        SelectionMode::One => 1,
        SelectionMode::All => matched,
        SelectionMode::Fixed => value.unwrap_or(1) as usize,
        SelectionMode::Percent => {
            let percent = value.unwrap_or(100).min(100) as usize;
            (matched * percent).div_ceil(100)
        }
    };
    wanted.min(matched)
}

/// Pick `count` of `candidates` at random, reproducibly: the same seed, round and candidate set
/// give the same choice on any machine (ChaCha8 is portable; candidates are sorted by key
/// first, so list order from the API server does not matter). Returns indices into
/// `candidates`, in ascending key order.
pub fn choose<T>(candidates: &[T], key: impl Fn(&T) -> &str, count: usize, seed: u64, round: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| key(&candidates[a]).cmp(key(&candidates[b])));
    let count = count.min(order.len());
    // Each round draws from its own stream so that adding rounds never changes earlier ones.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::from(round));
    let mut picked: Vec<usize> = index::sample(&mut rng, order.len(), count).into_iter().map(|i| order[i]).collect();
    picked.sort_by(|&a, &b| key(&candidates[a]).cmp(key(&candidates[b])));
    picked
}

/// A fresh seed for a run whose spec gives none. Kept in `i64`'s positive range because the API
/// stores it as an integer.
pub fn fresh_seed() -> i64 {
    (rand::random::<u64>() >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use SelectionMode::*;

    #[test]
    fn counts_per_mode() {
        assert_eq!(target_count(One, None, 5), 1);
        assert_eq!(target_count(One, None, 0), 0);
        assert_eq!(target_count(All, None, 5), 5);
        assert_eq!(target_count(Fixed, Some(3), 5), 3);
        assert_eq!(target_count(Fixed, Some(9), 5), 5, "fixed never takes more than matched");
    }

    #[test]
    fn percent_rounds_up_to_at_least_one() {
        assert_eq!(target_count(Percent, Some(10), 3), 1, "10% of 3 is 0.3, rounded up");
        assert_eq!(target_count(Percent, Some(50), 5), 3, "2.5 rounds up to 3");
        assert_eq!(target_count(Percent, Some(50), 4), 2, "exact halves stay exact");
        assert_eq!(target_count(Percent, Some(100), 7), 7);
        assert_eq!(target_count(Percent, Some(1), 1000), 10);
        assert_eq!(target_count(Percent, Some(30), 0), 0, "nothing matched, nothing taken");
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("web-{i:02}")).collect()
    }

    #[test]
    fn same_seed_and_round_choose_the_same_targets_whatever_the_list_order() {
        let pods = names(20);
        let mut reversed = pods.clone();
        reversed.reverse();
        let a: Vec<&str> = choose(&pods, |s| s, 5, 42, 0).into_iter().map(|i| pods[i].as_str()).collect();
        let b: Vec<&str> = choose(&reversed, |s| s, 5, 42, 0).into_iter().map(|i| reversed[i].as_str()).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 5);
        let mut dedup = a.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), 5, "no target chosen twice");
    }

    #[test]
    fn seeds_and_rounds_change_the_choice() {
        let pods = names(50);
        let pick = |seed, round| choose(&pods, |s| s, 3, seed, round);
        assert_ne!(pick(1, 0), pick(2, 0), "another seed, another choice");
        assert_ne!(pick(1, 0), pick(1, 1), "another round, another choice");
        assert_eq!(pick(7, 3), pick(7, 3));
    }

    #[test]
    fn choice_is_spread_over_all_candidates() {
        let pods = names(10);
        let mut hits = [0u32; 10];
        for seed in 0..2000 {
            for i in choose(&pods, |s| s, 1, seed, 0) {
                hits[i] += 1;
            }
        }
        // 200 expected per pod; a biased picker (always the first, say) fails this.
        assert!(hits.iter().all(|&h| (140..=260).contains(&h)), "{hits:?}");
    }

    #[test]
    fn asking_for_more_than_there_is_takes_everything() {
        let pods = names(3);
        assert_eq!(choose(&pods, |s| s, 10, 5, 0), vec![0, 1, 2]);
        assert!(choose(&Vec::<String>::new(), |s| s, 1, 5, 0).is_empty());
    }

    #[test]
    fn fresh_seeds_fit_the_api_field() {
        for _ in 0..100 {
            assert!(fresh_seed() >= 0);
        }
    }
}
