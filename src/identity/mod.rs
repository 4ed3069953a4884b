//! Identities: how people and clients prove who they are. For now the throttle that
//! slows down repeated failures; logins, sign-up and federation join it.

pub mod throttle;
