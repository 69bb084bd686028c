//! Secret providers for cme-exec.
//!
//! A reference such as `vault://secret/atlassian#api_token` names a provider by its scheme, a
//! *document* by its location and parameters (`secret/atlassian`), and optionally a key inside
//! that document (`#api_token`). Providers only fetch documents; the resolver in the binary
//! removes duplicates, runs fetches concurrently and picks keys with [`payload::select_string`]
//! and [`payload::select_object`], so every backend behaves the same way.
//!
//! Layers, each importing only the ones below it:
//! - [`registry`]: every backend listed once ([`registry::BACKENDS`]), building by kind;
//! - the backends: [`file`], [`env`], [`command`], [`vault`], [`aws_sm`], [`aws_ssm`], [`keyring`], one module (or folder) each; none
//!   imports another;
//! - shared pieces the backends use: [`provider`] (the traits and [`fetch_concurrently`]),
//!   [`aws_shared`] (for the AWS backends), [`secure_io`] (secret bytes and private files),
//!   [`net`], [`progress`], [`payload`], [`context`];
//! - leaves: [`kind`], [`table`], [`reference`], [`error`].
//!
//! The list of kinds is never behind `#[cfg]`: a build without the `vault` or `aws-sm` feature
//! still parses their settings, and each backend's own module answers that it was left out.

pub mod aws_shared;
pub mod aws_sm;
pub mod aws_ssm;
pub mod command;
pub mod context;
pub mod env;
pub mod error;
pub mod file;
pub mod keyring;
pub mod kind;
pub mod net;
pub mod payload;
pub mod progress;
pub mod provider;
pub mod reference;
pub mod registry;
pub mod secure_io;
pub mod table;
#[cfg(feature = "tls")]
pub mod tls;
pub mod vault;

pub use context::{Context, EnvReader};
pub use error::{docs_url, ErrorKind, FetchError};
pub use kind::Kind;
pub use payload::{Format, Payload, SecretMap};
pub use provider::{fetch_concurrently, Backend, BackendSettings, Identity, Provider};
pub use reference::{Document, Key, Reference};
pub use registry::{build, ProviderSettings};
pub use table::{toml_key, Problem, TableReader};
