//! The IAM model (DESIGN.md section 1), pure: no I/O and nothing of HTTP, so it can
//! be tested and benchmarked alone.
//!
//! - [`names`]: resource names, the tree's kinds and the reach rule;
//! - [`permissions`]: permission names, wildcard patterns, interned permission sets;
//! - [`catalog`]: the compiled-in role catalogs and their resolution into [`Roles`];
//! - [`evaluator`]: checks with the granting bindings, effective roles, holders, the
//!   granting rule and the last-owner rule;
//! - [`claim`]: the `roles` claim of tokens and userinfo;
//! - [`migrate`]: rewriting deprecated roles, with every widening listed first.

pub mod catalog;
pub mod claim;
pub mod evaluator;
pub mod migrate;
pub mod names;
pub mod permissions;

pub use catalog::{Catalog, Roles};
pub use evaluator::{BindingInput, Evaluator, PrincipalKind, PrincipalRef};

#[cfg(test)]
mod scenarios;
