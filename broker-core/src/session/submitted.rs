//! What a pipelined call returns: the call has taken effect in order, and its store write may
//! still be on its way to disk.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

use crate::error::{BrokerError, Result};

/// A send or an ack in flight: resolves once it is durable (per the sync policy) and has
/// taken effect. The work runs in a task of its own, so dropping this neither cancels nor loses
/// it; only its result is lost.
#[must_use = "a submitted call reports its failure only when awaited"]
#[derive(Debug)]
pub struct Submitted<T>(State<T>);

#[derive(Debug)]
enum State<T> {
    /// Nothing left to wait for (`None` once taken).
    Done(Option<T>),
    Running(JoinHandle<Result<T>>),
}

impl<T> Submitted<T> {
    pub(crate) fn done(value: T) -> Submitted<T> {
        Submitted(State::Done(Some(value)))
    }

    pub(crate) fn running(task: JoinHandle<Result<T>>) -> Submitted<T> {
        Submitted(State::Running(task))
    }
}

// The value is only ever moved out, never pinned in place.
impl<T> Unpin for Submitted<T> {}

impl<T> Future for Submitted<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        match &mut self.get_mut().0 {
            State::Done(value) => Poll::Ready(
                value
                    .take()
                    .ok_or_else(|| BrokerError::Internal("a submitted call awaited twice".into())),
            ),
            State::Running(task) => Pin::new(task).poll(cx).map(|joined| {
                joined.unwrap_or_else(|e| {
                    Err(BrokerError::Internal(format!(
                        "a pipelined call's task failed: {e}"
                    )))
                })
            }),
        }
    }
}
