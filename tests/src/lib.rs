//! End-to-end test harness for Tollgate.
