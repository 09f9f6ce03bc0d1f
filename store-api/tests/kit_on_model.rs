//! The conformance kit run against its own reference model, through the store traits. The model
//! keeps its state across close and open, so the reopen variants run too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use store_api::testkit::ModelFactory;

store_api::conformance_tests!(ModelFactory::default(), durable = true);

#[test]
fn at_least_forty_scenarios() {
    let names = store_api::testkit::scenario_names();
    assert!(names.len() >= 40, "only {} scenarios", names.len());
    let mut unique = names.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "scenario names repeat");
}
