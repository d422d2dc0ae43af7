//! The lab's target app (`chaoslab demo`): a configurable HTTP service with resilience patterns
//! that can be switched on and off at runtime.
