//! Validated tokens, remembered per shard: a client presents the same token for up to its
//! lifetime (an hour or more), and checking its RS256 signature again on every request would
//! cost more than many requests themselves. An entry holds until the token expires, and only
//! while the key set and the `[auth]` settings it was validated under are the ones in force
//! (any change to them empties the cache). Bounded, least recently used out first: a client
//! sending a new token per request only ever evicts entries, it never grows the cache.

use std::num::NonZeroUsize;
use std::rc::Rc;

use edgeblob_proto::bearer::Principal;

/// The most tokens a shard remembers.
pub const MAX_CACHED_TOKENS: usize = 512;

struct Cached {
    account: String,
    principal: Rc<Principal>,
}

pub struct TokenCache {
    /// Keyed by the whole token (a digest would let a crafted collision borrow a principal).
    entries: lru::LruCache<String, Cached>,
    /// The key set and settings the entries were validated under.
    generation: u64,
}

impl Default for TokenCache {
    fn default() -> TokenCache {
        let bound = NonZeroUsize::new(MAX_CACHED_TOKENS).unwrap_or(NonZeroUsize::MIN);
        TokenCache { entries: lru::LruCache::new(bound), generation: 0 }
    }
}

impl TokenCache {
    /// The principal of `token`, validated before for `account` under `generation` and not
    /// expired at `now` (seconds since the epoch).
    pub fn get(&mut self, token: &str, account: &str, generation: u64, now: i64) -> Option<Rc<Principal>> {
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
            return None;
        }
        let c = self.entries.get(token)?;
        (c.account == account && now < c.principal.expires).then(|| c.principal.clone())
    }

    /// Remembers a token just validated under `generation` (the least recently used goes when
    /// full; an expired one is never used again, so it goes in time).
    pub fn put(&mut self, token: &str, account: &str, generation: u64, principal: Rc<Principal>) {
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        }
        self.entries.put(token.to_owned(), Cached { account: account.to_owned(), principal });
        debug_assert!(self.entries.len() <= MAX_CACHED_TOKENS);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(oid: &str, expires: i64) -> Rc<Principal> {
        Rc::new(Principal { object_id: oid.into(), expires, ..Principal::default() })
    }

    #[test]
    fn a_token_is_remembered_for_its_account_until_it_expires_or_the_keys_change() {
        let mut c = TokenCache::default();
        assert!(c.get("t1", "acct", 1, 100).is_none());
        c.put("t1", "acct", 1, principal("a", 200));
        assert_eq!(c.get("t1", "acct", 1, 150).unwrap().object_id, "a");
        assert!(c.get("t1", "other", 1, 150).is_none(), "a token validated for one account is not another's");
        assert!(c.get("t1", "acct", 1, 200).is_none(), "expired");
        assert!(c.get("t1", "acct", 2, 150).is_none(), "validated under keys no longer in force");
        assert!(c.is_empty(), "a new generation forgets every entry");
    }

    #[test]
    fn the_cache_never_holds_more_than_its_bound_and_keeps_the_tokens_in_use() {
        let mut c = TokenCache::default();
        c.put("busy", "acct", 1, principal("b", 500));
        for i in 0..2 * MAX_CACHED_TOKENS {
            c.put(&format!("once{i}"), "acct", 1, principal("c", 500));
            assert!(c.len() <= MAX_CACHED_TOKENS);
            // A token in use stays while a flood of new ones passes through.
            assert!(c.get("busy", "acct", 1, 100).is_some(), "after {i}");
        }
        assert_eq!(c.len(), MAX_CACHED_TOKENS);
        assert!(c.get("once0", "acct", 1, 100).is_none(), "the least recently used went first");
    }
}
