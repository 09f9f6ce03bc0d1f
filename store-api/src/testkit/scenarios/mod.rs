//! The named scenarios. Each is one guarantee of the crate docs, written against the traits only.

mod admin;
mod queue;
mod topic;
mod tx;

use super::{Ctx, Failure, Outcome};

/// Calls `$callback!` with the list of every scenario name; the one list both the generated
/// tests and the dispatcher below are made from.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_scenario {
    ($callback:ident { $($args:tt)* }) => {
        $crate::$callback! { $($args)*;
            add_then_get_returns_identical_message,
            every_body_kind_round_trips,
            empty_and_unicode_bodies_and_names,
            one_mebibyte_body,
            sixteen_mebibyte_body,
            priority_order_then_fifo,
            sequences_strictly_increase,
            ack_removes_exactly_that_message,
            unknown_ids_are_not_found,
            duplicate_add_is_rejected,
            invalid_messages_are_rejected,
            purge_empties_queue,
            count_and_bytes_are_exact,
            browse_pages_by_order_key,
            cursor_batches_honour_max_and_order,
            cursor_resumes_while_adds_interleave,
            arrival_order_cursor_ignores_priority,
            cursor_resumes_while_acks_interleave,
            cursor_reset_rewinds,
            set_cursor_after_skips_earlier_messages,
            expired_messages_found_by_scan,
            concurrent_adds_never_skipped_by_cursor,
            submitted_adds_keep_their_order,
            topic_message_without_subscription_is_not_kept,
            non_retroactive_subscription_sees_only_later_messages,
            retroactive_subscription_sees_all_kept_messages,
            topic_message_kept_until_every_subscription_acks,
            out_of_order_durable_acks_are_exact,
            durable_ack_errors,
            unwaited_acks_are_exact_and_durable,
            deleting_subscription_releases_its_messages,
            duplicate_subscription_is_rejected,
            subscriptions_listed_and_looked_up,
            subscription_cursor_batches_and_resumes,
            subscription_pending_count_and_bytes_exact,
            topic_remove_drops_for_every_subscription,
            topic_purge,
            topic_expired_scan,
            commit_applies_adds_and_acks_together,
            uncommitted_operations_are_invisible,
            rollback_leaves_no_trace,
            failed_commit_changes_nothing,
            local_transaction_does_not_survive_reopen,
            prepared_transaction_survives_reopen_and_commits,
            prepared_transaction_survives_reopen_and_rolls_back,
            transaction_misuse_is_an_error,
            durable_ack_in_transaction,
            transactional_topic_add_fans_out_at_commit,
            destinations_listed_and_removed,
            removed_destination_handles_fail,
            delete_all_empties_store,
            thousand_destinations,
            closed_store_refuses_calls,
            checkpoint_keeps_contents,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_dispatch {
    (; $($name:ident),* $(,)?) => {
        pub(crate) const NAMES: &[&str] = &[$(stringify!($name)),*];

        pub(crate) async fn run(name: &str, ctx: &mut Ctx) -> Outcome {
            use admin::*;
            use queue::*;
            use topic::*;
            use tx::*;
            match name {
                $(stringify!($name) => $name(ctx).await,)*
                other => Err(Failure(format!("no conformance scenario is named `{other}`"))),
            }
        }
    };
}

crate::__for_each_scenario!(__scenario_dispatch {});
