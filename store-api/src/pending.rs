//! A write whose place is fixed but which may not be durable yet.
//!
//! A producer that pipelines (sends on without waiting for each message's fsync) needs two
//! moments from the store instead of one: when the message has its place in the destination's
//! order, so the next send can be submitted behind it, and when it is durable, so a receipt that
//! follows it can be answered. [`DestinationStore::submit_add`](crate::DestinationStore::submit_add)
//! returns at the first moment with a [`Pending`] that resolves at the second. Everything a
//! connection has in flight then shares one fsync through the engine's group commit.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::Result;

/// Resolves when the write it stands for is durable (per the engine's sync policy), with its
/// result. It must be driven to completion: an engine may do its post-durability bookkeeping
/// (making the message visible to readers) in this future, so a caller that cannot await it
/// spawns it. The broker always does.
#[must_use = "a pending write must be awaited (or spawned) for the message to become visible"]
pub struct Pending<T> {
    inner: Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>,
}

impl<T: Send + 'static> Pending<T> {
    /// A write that completes when `future` does.
    pub fn new(future: impl Future<Output = Result<T>> + Send + 'static) -> Pending<T> {
        Pending {
            inner: Box::pin(future),
        }
    }

    /// A write that is already durable (or already failed).
    pub fn ready(result: Result<T>) -> Pending<T> {
        Pending::new(std::future::ready(result))
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.inner.as_mut().poll(cx)
    }
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}
