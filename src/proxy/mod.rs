//! The fault-injecting proxy (`chaoslab proxy`): forwards HTTP or TCP to an upstream and applies
//! a time-bounded fault set on the way.
