//! How many conditional puts are in flight, adapted to throttling (AIMD, as TCP does it):
//! a throttle halves the limit, a full window of successes raises it by one.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Semaphore, SemaphorePermit};

/// A limit on requests in flight that backs off on throttling.
#[derive(Debug)]
pub struct AdaptiveLimit {
    semaphore: Semaphore,
    limit: AtomicUsize,
    successes: AtomicUsize,
    /// Permits to retire as they come back (after a decrease larger than the free ones).
    debt: AtomicUsize,
    min: usize,
    max: usize,
}

impl AdaptiveLimit {
    /// Starts at `initial` in flight, never below `min` or above `max`.
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        let min = min.max(1);
        let initial = initial.clamp(min, max.max(min));
        Self {
            semaphore: Semaphore::new(initial),
            limit: AtomicUsize::new(initial),
            successes: AtomicUsize::new(0),
            debt: AtomicUsize::new(0),
            min,
            max: max.max(min),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Waits for a place.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        // The semaphore is never closed, so acquire cannot fail.
        self.semaphore
            .acquire()
            .await
            .expect("semaphore is never closed")
    }

    /// A request succeeded: after `limit` successes, one more place.
    pub fn on_success(&self, permit: SemaphorePermit<'_>) {
        self.release(permit);
        let limit = self.limit.load(Ordering::Relaxed);
        if self.successes.fetch_add(1, Ordering::Relaxed) + 1 >= limit {
            self.successes.store(0, Ordering::Relaxed);
            if limit < self.max
                && self
                    .limit
                    .compare_exchange(limit, limit + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.semaphore.add_permits(1);
            }
        }
    }

    /// A request was throttled: half the places.
    pub fn on_throttle(&self, permit: SemaphorePermit<'_>) {
        let limit = self.limit.load(Ordering::Relaxed);
        let target = (limit / 2).max(self.min);
        if target < limit
            && self
                .limit
                .compare_exchange(limit, target, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.successes.store(0, Ordering::Relaxed);
            let reduce = limit - target;
            let forgotten = self.semaphore.forget_permits(reduce);
            self.debt.fetch_add(reduce - forgotten, Ordering::Relaxed);
        }
        self.release(permit);
    }

    /// Any other outcome: the place is returned unchanged.
    pub fn release(&self, permit: SemaphorePermit<'_>) {
        let owed = self
            .debt
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |debt| {
                debt.checked_sub(1)
            })
            .is_ok();
        if owed {
            permit.forget();
        } else {
            drop(permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn throttles_halve_the_limit_and_successes_win_it_back_slowly() {
        let limit = AdaptiveLimit::new(32, 4, 64);
        let permit = limit.acquire().await;
        limit.on_throttle(permit);
        assert_eq!(limit.limit(), 16);
        assert_eq!(limit.semaphore.available_permits(), 16, "16 places retired");
        for _ in 0..5 {
            let permit = limit.acquire().await;
            limit.on_throttle(permit);
        }
        assert_eq!(limit.limit(), 4, "never below the minimum");
        for _ in 0..4 {
            let permit = limit.acquire().await;
            limit.on_success(permit);
        }
        assert_eq!(
            limit.limit(),
            5,
            "one more place after a window of successes"
        );
        assert_eq!(limit.semaphore.available_permits(), 5);
    }

    #[tokio::test]
    async fn places_held_during_a_decrease_are_retired_when_they_come_back() {
        let limit = AdaptiveLimit::new(8, 1, 8);
        let held: Vec<_> = futures_held(&limit, 8).await;
        let mut held = held.into_iter();
        limit.on_throttle(held.next().unwrap());
        assert_eq!(limit.limit(), 4);
        for permit in held {
            limit.release(permit);
        }
        assert_eq!(
            limit.semaphore.available_permits(),
            4,
            "in flight never exceeds the new limit"
        );
    }

    async fn futures_held(limit: &AdaptiveLimit, n: usize) -> Vec<SemaphorePermit<'_>> {
        let mut permits = Vec::new();
        for _ in 0..n {
            permits.push(limit.acquire().await);
        }
        permits
    }
}
