//! The queue in front of a fill's stage (hash, store): batches handed on behind the
//! download, bounded in bytes, and taken out in groups: the stage names the least it wants
//! (a MiB, [`GROUP`], for work on the blocking pool), and gets that or more, or what is
//! left at the end.
//!
//! Why groups: a fill that keeps up with its upstream reads what the socket holds, often
//! 64 KiB or less at a time, so a stage that took each batch on its own made a trip to the
//! blocking pool (two context switches) per 64 KiB: 32 000 switches per cold GiB, more
//! than a third of the cache's. A stage waits for a group instead; readers never wait for
//! it (they take the bytes from the fill's window, which keeps every byte not yet stored).

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::batch::Batch;

/// Bytes a stage gathers before it works on them, unless the download ended.
pub(super) const GROUP: usize = 1024 * 1024;

/// A batch and the room it takes in the queue.
type Entry = (Batch, OwnedSemaphorePermit);

/// The sending side, held by the fill.
pub(super) struct StageQueue {
    tx: Option<mpsc::UnboundedSender<Entry>>,
    ahead: Arc<Semaphore>,
    limit: usize,
}

/// The stage's side.
pub(super) struct StageInbox {
    rx: mpsc::UnboundedReceiver<Entry>,
}

/// A queue holding about `ahead` bytes at most (at least twice [`GROUP`]).
///
/// A stage gathering a group holds the room of what it has so far (less than a group), so
/// a batch never asks for more room than is left then: a larger one counts as
/// `limit - GROUP + 1` bytes and the queue runs over its bound by that batch's excess,
/// rather than the sender and the stage waiting for each other forever.
pub(super) fn stage_queue(ahead: usize) -> (StageQueue, StageInbox) {
    let limit = ahead.clamp(2 * GROUP, Semaphore::MAX_PERMITS);
    let (tx, rx) = mpsc::unbounded_channel();
    let queue = StageQueue {
        tx: Some(tx),
        ahead: Arc::new(Semaphore::new(limit)),
        limit,
    };
    (queue, StageInbox { rx })
}

impl StageQueue {
    /// Queues the next batch; waits while the queue is full. An error means the stage is
    /// gone.
    pub(super) async fn send(&self, batch: Batch) -> Result<(), ()> {
        let most = self.limit - GROUP + 1;
        let want = u32::try_from(batch.len().clamp(1, most)).unwrap_or(u32::MAX);
        let room = Arc::clone(&self.ahead)
            .acquire_many_owned(want)
            .await
            .map_err(|_| ())?;
        match &self.tx {
            Some(tx) => tx.send((batch, room)).map_err(|_| ()),
            None => Err(()),
        }
    }

    /// No more batches: the stage gets what is queued, then the end.
    pub(super) fn close(&mut self) {
        self.tx = None;
    }
}

impl StageInbox {
    /// The next batches, joined in order: at least `min` bytes (`min` is capped at
    /// [`GROUP`]; the last batch may take the group past it), fewer only when the queue was
    /// closed first; `None` once it is closed and empty. The room they took is freed when
    /// the returned permit is dropped (after the stage is done with them).
    pub(super) async fn next_group(&mut self, min: usize) -> Option<(Batch, OwnedSemaphorePermit)> {
        let min = min.min(GROUP);
        let (mut group, mut room) = self.rx.recv().await?;
        while group.len() < min {
            match self.rx.recv().await {
                Some((batch, more)) => {
                    group.append(batch);
                    room.merge(more);
                }
                None => break,
            }
        }
        Some((group, room))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::FutureExt;

    use super::*;

    fn batch(len: usize) -> Batch {
        Batch::from(Bytes::from(vec![7u8; len]))
    }

    #[tokio::test]
    async fn small_batches_come_out_in_groups_and_the_rest_at_the_end() {
        let (mut queue, mut inbox) = stage_queue(4 * GROUP);
        for _ in 0..20 {
            queue.send(batch(GROUP / 8)).await.unwrap();
        }
        queue.close();
        let mut sizes = Vec::new();
        while let Some((group, _room)) = inbox.next_group(GROUP).await {
            sizes.push(group.len());
        }
        assert_eq!(sizes, [GROUP, GROUP, GROUP / 2]);
    }

    #[tokio::test]
    async fn a_stage_that_asks_for_one_byte_gets_each_batch_as_it_came() {
        let (mut queue, mut inbox) = stage_queue(GROUP);
        for len in [10, 20, 30] {
            queue.send(batch(len)).await.unwrap();
        }
        queue.close();
        let mut sizes = Vec::new();
        while let Some((group, _room)) = inbox.next_group(1).await {
            sizes.push(group.len());
        }
        assert_eq!(sizes, [10, 20, 30]);
    }

    #[tokio::test]
    async fn a_full_queue_holds_the_sender_until_a_group_is_done() {
        let (queue, mut inbox) = stage_queue(2 * GROUP);
        queue.send(batch(GROUP)).await.unwrap();
        queue.send(batch(GROUP)).await.unwrap();
        let third = queue.send(batch(GROUP / 2));
        tokio::pin!(third);
        assert!(third.as_mut().now_or_never().is_none(), "the queue is full");
        let (group, room) = inbox.next_group(GROUP).await.unwrap();
        assert_eq!(group.len(), GROUP);
        assert!(
            third.as_mut().now_or_never().is_none(),
            "still being worked on"
        );
        drop(room);
        third.await.unwrap();
    }

    #[tokio::test]
    async fn a_stage_waits_for_its_group_and_gets_the_rest_when_the_queue_closes() {
        let (mut queue, mut inbox) = stage_queue(4 * GROUP);
        queue.send(batch(GROUP / 2)).await.unwrap();
        {
            let next = inbox.next_group(GROUP);
            tokio::pin!(next);
            assert!(
                next.as_mut().now_or_never().is_none(),
                "half a group is not one"
            );
            queue.send(batch(GROUP / 4)).await.unwrap();
            assert!(
                next.as_mut().now_or_never().is_none(),
                "three quarters neither"
            );
            queue.close();
            let (group, _room) = next.await.unwrap();
            assert_eq!(group.len(), GROUP / 2 + GROUP / 4, "closed: what there is");
        }
        assert!(inbox.next_group(GROUP).await.is_none());
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_room_left_still_goes_through() {
        // The stage holds half a group's room while it waits for more; a batch as large
        // as the whole queue must neither wait for that room nor leave the stage waiting.
        let (queue, mut inbox) = stage_queue(2 * GROUP);
        queue.send(batch(GROUP / 2)).await.unwrap();
        let stage = tokio::spawn(async move {
            let (group, room) = inbox.next_group(GROUP).await.unwrap();
            drop(room);
            group.len()
        });
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            queue.send(batch(3 * GROUP)),
        )
        .await
        .expect("the sender waited for room the stage holds")
        .unwrap();
        assert_eq!(stage.await.unwrap(), GROUP / 2 + 3 * GROUP);
    }

    #[tokio::test]
    async fn the_order_of_the_bytes_is_kept() {
        let (mut queue, mut inbox) = stage_queue(GROUP);
        for i in 0..10u8 {
            queue
                .send(Batch::from(Bytes::from(vec![i; 1000])))
                .await
                .unwrap();
        }
        queue.close();
        let (group, _room) = inbox.next_group(GROUP).await.unwrap();
        let bytes: Vec<u8> = group.chunks().iter().flat_map(|c| c.to_vec()).collect();
        let want: Vec<u8> = (0..10u8).flat_map(|i| vec![i; 1000]).collect();
        assert_eq!(bytes, want);
        assert!(inbox.next_group(GROUP).await.is_none());
    }
}
