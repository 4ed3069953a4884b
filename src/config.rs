//! Layered configuration: built-in defaults, then an optional TOML file, then
//! `GATEHOUSE_*` environment variables (the environment wins).
//!
//! Every setting has one TOML key and one environment variable, listed in
//! [`SETTINGS`]; the README's configuration reference is that table. An unknown key in
//! the file, an unknown `GATEHOUSE_*` variable or a malformed value is an error whose
//! one line names the setting. This module does no I/O beyond reading the file.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// A configuration error: one line that names the setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// `GATEHOUSE_*` variables that are read by commands or tests, not settings.
const NON_SETTING_VARIABLES: &[&str] = &[
    "GATEHOUSE_CONFIG",
    "GATEHOUSE_BOOTSTRAP_PASSWORD",
    "GATEHOUSE_TEST_DATABASE_URL",
    "GATEHOUSE_TEST_REDIS_URL",
];

/// A value that may be given as an environment variable.
trait FromEnv: Sized {
    fn from_env(raw: &str) -> Result<Self, String>;
}

macro_rules! from_env_via_from_str {
    ($($ty:ty => $what:literal),* $(,)?) => {$(
        impl FromEnv for $ty {
            fn from_env(raw: &str) -> Result<Self, String> {
                <$ty>::from_str(raw.trim()).map_err(|_| format!("expected {}, got {raw:?}", $what))
            }
        }
    )*};
}
from_env_via_from_str!(
    SocketAddr => "host:port, e.g. 127.0.0.1:8080",
    u64 => "a non-negative integer",
    u32 => "a non-negative integer",
    SigningAlg => "one of RS256, ES256, EdDSA",
    bool => "true or false",
);

impl FromEnv for String {
    fn from_env(raw: &str) -> Result<Self, String> {
        Ok(raw.to_owned())
    }
}

impl FromEnv for PathBuf {
    fn from_env(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("expected a path, got an empty value".into());
        }
        Ok(PathBuf::from(raw))
    }
}

impl<T: FromEnv> FromEnv for Option<T> {
    fn from_env(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            Ok(None)
        } else {
            T::from_env(raw).map(Some)
        }
    }
}

/// A secret setting: never printed by `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl FromEnv for Secret {
    fn from_env(raw: &str) -> Result<Self, String> {
        Ok(Secret(raw.to_owned()))
    }
}

/// The JWS algorithm new signing keys are made for.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 over a 2048-bit key (the default).
    RS256,
    /// ECDSA over P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlg {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::RS256 => "RS256",
            SigningAlg::ES256 => "ES256",
            SigningAlg::EdDSA => "EdDSA",
        }
    }
}

impl FromStr for SigningAlg {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "RS256" => Ok(SigningAlg::RS256),
            "ES256" => Ok(SigningAlg::ES256),
            "EdDSA" => Ok(SigningAlg::EdDSA),
            _ => Err(()),
        }
    }
}

/// An API (resource server) registered from the configuration file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Its identifier URI, the `aud` of tokens for it.
    pub identifier: String,
    /// Shown on consent pages.
    pub display_name: String,
    /// The permissions it defines.
    #[serde(default)]
    pub permissions: Vec<crate::iam::permissions::Permission>,
}

/// Whether the URL's host is a loopback address (or `localhost`), where plain http is
/// allowed.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An upstream OpenID provider people may log in through (`[[federation.providers]]`
/// tables of the TOML file, or `/v1/identity-providers`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// A slug; appears in URLs (`/federation/<id>/callback`).
    pub id: String,
    /// The button's text: "Continue with <display_name>".
    pub display_name: String,
    /// The upstream's issuer; its discovery document is read at start and refreshed.
    pub issuer: String,
    /// gatehouse's client id at the upstream.
    pub client_id: String,
    /// gatehouse's client secret at the upstream.
    pub client_secret: Secret,
    /// Scopes asked for (`openid` is always among them).
    #[serde(default = "default_provider_scopes")]
    pub scopes: Vec<String>,
    /// Whether the upstream's `email_verified` is believed, so an identity may be
    /// linked to the account with that address, and provisioned accounts count as
    /// verified.
    #[serde(default)]
    pub trust_email: bool,
    /// Whether a first login with no matching account creates one.
    #[serde(default)]
    pub provision: bool,
    /// The upstream claim listing the person's groups, for `group_mappings`.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Upstream group values that make the person a member of gatehouse groups.
    #[serde(default)]
    pub group_mappings: Vec<GroupMapping>,
}

/// One claim mapping: while the upstream lists `upstream` in the groups claim, the
/// person is a member of `group` (a gatehouse group name).
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMapping {
    /// The value in the upstream's groups claim.
    pub upstream: String,
    /// The group, `orgs/<org>/groups/<slug>`.
    pub group: String,
}

fn default_provider_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

/// The `[federation]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// The upstream providers.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
}

impl ProviderConfig {
    /// Checks the fields; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        let slug = crate::iam::names::valid_slug;
        if !slug(&self.id) {
            return Err("id: a slug, [a-z0-9][a-z0-9-]{1,62}".into());
        }
        if self.display_name.trim().is_empty() || self.display_name.len() > 100 {
            return Err("display_name: between 1 and 100 characters".into());
        }
        let url = url::Url::parse(&self.issuer).map_err(|e| format!("issuer: not a URL ({e})"))?;
        let loopback = is_loopback(&url);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err("issuer: https (or http on loopback) required".into()),
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err("issuer: no query, fragment or credentials".into());
        }
        if self.client_id.is_empty() || self.client_id.len() > 255 {
            return Err("client_id: between 1 and 255 characters".into());
        }
        if self.client_secret.0.is_empty() || self.client_secret.0.len() > 1024 {
            return Err("client_secret: between 1 and 1024 characters".into());
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err("scopes: must include openid".into());
        }
        let scope_ok = |s: &String| {
            !s.is_empty()
                && s.len() <= 100
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        };
        if self.scopes.len() > 20 || !self.scopes.iter().all(scope_ok) {
            return Err("scopes: at most 20 scope tokens without spaces".into());
        }
        if let Some(c) = &self.groups_claim
            && (c.is_empty() || c.len() > 100)
        {
            return Err("groups_claim: between 1 and 100 characters".into());
        }
        if !self.group_mappings.is_empty() && self.groups_claim.is_none() {
            return Err("group_mappings: need groups_claim".into());
        }
        for (i, m) in self.group_mappings.iter().enumerate() {
            let parts: Vec<&str> = m.group.split('/').collect();
            let group_ok = parts.len() == 4
                && parts[0] == "orgs"
                && parts[2] == "groups"
                && slug(parts[1])
                && slug(parts[3]);
            if !group_ok {
                return Err(format!(
                    "group_mappings[{i}].group: orgs/<org>/groups/<slug>"
                ));
            }
            if m.upstream.is_empty() || m.upstream.len() > 255 {
                return Err(format!(
                    "group_mappings[{i}].upstream: between 1 and 255 characters"
                ));
            }
        }
        if self.group_mappings.len() > 100 {
            return Err("group_mappings: at most 100".into());
        }
        Ok(())
    }
}

/// An address block, `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or address/prefix"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromEnv for Vec<Cidr> {
    fn from_env(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect()
    }
}

/// The role catalogs compiled into the binary.
pub const CATALOGS: &[&str] = &["default", "stackpath", "mia-platform", "cloud-iam"];

macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $field:ident : $ty:ty = $default:expr, $env:literal; )*) => {
        /// The resolved configuration of a node or a command.
        #[derive(Clone, Debug)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $field: $ty, )*
            /// APIs registered at start (`[[apis]]` tables of the TOML file).
            pub apis: Vec<ApiConfig>,
            /// Upstream providers (`[[federation.providers]]` tables of the TOML file).
            pub federation: FederationConfig,
        }

        /// The TOML file: every key optional, unknown keys refused.
        #[derive(Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileConfig {
            $( #[serde(default)] $field: Option<$ty>, )*
            #[serde(default)]
            apis: Vec<ApiConfig>,
            #[serde(default)]
            federation: FederationConfig,
        }

        /// Every setting as (TOML key, environment variable, documentation).
        pub const SETTINGS: &[(&str, &str, &str)] = &[
            $( (stringify!($field), $env, concat!($($doc),*)), )*
        ];

        impl Default for Config {
            fn default() -> Self {
                Config { $( $field: $default, )* apis: Vec::new(), federation: FederationConfig::default() }
            }
        }

        fn layer(file: FileConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
            let defaults = Config::default();
            Ok(Config {
                $( $field: match env($env) {
                    Some(raw) => <$ty as FromEnv>::from_env(&raw)
                        .map_err(|e| ConfigError(format!("{}: {e}", $env)))?,
                    None => file.$field.unwrap_or(defaults.$field),
                }, )*
                apis: file.apis,
                federation: file.federation,
            })
        }
    };
}

settings! {
    /// Address and port to listen on.
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)), "GATEHOUSE_LISTEN";
    /// The issuer URL; tokens, discovery and mail links are built from it. Default: `http://<listen>`.
    issuer: Option<String> = None, "GATEHOUSE_ISSUER";
    /// Directory for the embedded SQLite database and the mail outbox.
    data_dir: PathBuf = PathBuf::from("./data"), "GATEHOUSE_DATA_DIR";
    /// Directory holding the key-encryption key file `kek` (mode 0600).
    keys_dir: PathBuf = PathBuf::from("./keys"), "GATEHOUSE_KEYS_DIR";
    /// `sqlite://<path>` or `postgres://...`. Default: SQLite at `<data_dir>/gatehouse.db`.
    database_url: Option<Secret> = None, "GATEHOUSE_DATABASE_URL";
    /// Maximum connections in the database pool.
    database_max_connections: u32 = 16, "GATEHOUSE_DATABASE_MAX_CONNECTIONS";
    /// `redis://` or `rediss://` URL for short-lived state. Default: in process memory.
    redis_url: Option<Secret> = None, "GATEHOUSE_REDIS_URL";
    /// Key-encryption key, 32 bytes in base64url. Default: the file `<keys_dir>/kek`.
    key_encryption_key: Option<Secret> = None, "GATEHOUSE_KEY_ENCRYPTION_KEY";
    /// Active role catalog: `default`, `stackpath`, `mia-platform` or `cloud-iam`.
    catalog: String = "default".to_owned(), "GATEHOUSE_CATALOG";
    /// The instance's name, shown on its pages.
    instance_name: String = "gatehouse".to_owned(), "GATEHOUSE_INSTANCE_NAME";
    /// Algorithm of newly generated signing keys: `RS256`, `ES256` or `EdDSA`.
    signing_alg: SigningAlg = SigningAlg::RS256, "GATEHOUSE_SIGNING_ALG";
    /// Lifetime of access tokens, in seconds.
    access_token_ttl_secs: u64 = 600, "GATEHOUSE_ACCESS_TOKEN_TTL_SECS";
    /// Lifetime of ID tokens, in seconds.
    id_token_ttl_secs: u64 = 600, "GATEHOUSE_ID_TOKEN_TTL_SECS";
    /// Lifetime of refresh-token families, in seconds.
    refresh_token_ttl_secs: u64 = 2_592_000, "GATEHOUSE_REFRESH_TOKEN_TTL_SECS";
    /// How long a browser session lasts after login, in seconds.
    session_ttl_secs: u64 = 28_800, "GATEHOUSE_SESSION_TTL_SECS";
    /// Seconds during which a rotated refresh token presented again by the same client gets the same answer instead of revoking its family (0 to 5; 0 is off).
    refresh_reuse_grace_secs: u64 = 0, "GATEHOUSE_REFRESH_REUSE_GRACE_SECS";
    /// Cache lifetime of the JWKS and discovery documents; a rotated key is published this long before it signs.
    jwks_cache_secs: u64 = 300, "GATEHOUSE_JWKS_CACHE_SECS";
    /// How often each node polls the change sequence, in milliseconds (50 to 1000).
    poll_interval_ms: u64 = 500, "GATEHOUSE_POLL_INTERVAL_MS";
    /// How often each upstream provider's discovery document and keys are read again, in seconds (an unreachable one is retried sooner).
    federation_refresh_secs: u64 = 300, "GATEHOUSE_FEDERATION_REFRESH_SECS";
    /// How long in-flight requests may take to finish after SIGTERM, in seconds.
    shutdown_grace_secs: u64 = 30, "GATEHOUSE_SHUTDOWN_GRACE_SECS";
    /// Proxies whose `X-Forwarded-For` is believed (addresses or blocks, comma-separated in the environment).
    trusted_proxies: Vec<Cidr> = Vec::new(), "GATEHOUSE_TRUSTED_PROXIES";
    /// Whether people may sign up themselves (each gets an organization of their own).
    signup_enabled: bool = true, "GATEHOUSE_SIGNUP_ENABLED";
    /// `smtp://[user:pass@]host[:port]` (STARTTLS required, port 587; `?tls=none` only for a relay on loopback, port 25) or `smtps://...` (TLS, port 465). Default: mail goes to files in `<data_dir>/outbox`.
    smtp_url: Option<Secret> = None, "GATEHOUSE_SMTP_URL";
    /// The sender of gatehouse's mail, `Name <address>`.
    mail_from: String = "gatehouse <noreply@localhost>".to_owned(), "GATEHOUSE_MAIL_FROM";
    /// Log filter (`error`, `warn`, `info`, `debug`, or `tracing` directives).
    log: String = "info".to_owned(), "GATEHOUSE_LOG";
}

/// Where the durable store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseKind {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Config {
    /// Loads the configuration: the file named by `path` (or `GATEHOUSE_CONFIG`), then
    /// the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("GATEHOUSE_"))
            .collect();
        let env_path = vars
            .iter()
            .find(|(k, _)| k == "GATEHOUSE_CONFIG")
            .map(|(_, v)| PathBuf::from(v));
        let path = path.map(Path::to_path_buf).or(env_path);
        let text = match &path {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                ConfigError(format!(
                    "GATEHOUSE_CONFIG: cannot read {}: {e}",
                    p.display()
                ))
            })?),
            None => None,
        };
        Self::from_sources(
            text.as_deref()
                .map(|t| (path.as_deref().unwrap_or(Path::new("")), t)),
            &vars,
        )
    }

    /// Builds a configuration from a TOML text and a list of environment variables;
    /// the pure core of [`Config::load`].
    pub fn from_sources(
        file: Option<(&Path, &str)>,
        vars: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        for (key, _) in vars {
            let known = SETTINGS.iter().any(|(_, env, _)| env == key)
                || NON_SETTING_VARIABLES.contains(&key.as_str())
                || key.starts_with("GATEHOUSE_TEST_");
            if key.starts_with("GATEHOUSE_") && !known {
                return Err(ConfigError(format!(
                    "{key}: unknown setting (see the configuration reference in the README)"
                )));
            }
        }
        let parsed = match file {
            Some((path, text)) => toml::from_str::<FileConfig>(text).map_err(|e| {
                let line = unknown_key_line(e.message(), text).or_else(|| {
                    e.span()
                        .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                });
                let at = line.map(|l| format!(" line {l}")).unwrap_or_default();
                ConfigError(format!(
                    "config file {}{at}: {}",
                    path.display(),
                    e.message().replace('\n', " ")
                ))
            })?,
            None => FileConfig::default(),
        };
        let lookup = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let config = layer(parsed, &lookup)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let issuer = self.issuer();
        let url = url::Url::parse(&issuer)
            .map_err(|e| ConfigError(format!("GATEHOUSE_ISSUER: not a URL ({e}): {issuer:?}")))?;
        let loopback = is_loopback(&url);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(ConfigError(format!(
                    "GATEHOUSE_ISSUER: http is allowed only on loopback; use https for {issuer}"
                )));
            }
            _ => {
                return Err(ConfigError(format!(
                    "GATEHOUSE_ISSUER: scheme must be https (or http on loopback): {issuer}"
                )));
            }
        }
        if url.query().is_some() || url.fragment().is_some() || issuer.ends_with('/') {
            return Err(ConfigError(format!(
                "GATEHOUSE_ISSUER: must have no query, fragment or trailing slash: {issuer}"
            )));
        }
        if let Some(db) = &self.database_url {
            database_kind(&db.0)?;
        }
        if let Some(redis) = &self.redis_url {
            let ok = url::Url::parse(&redis.0)
                .map(|u| matches!(u.scheme(), "redis" | "rediss") && u.host().is_some())
                .unwrap_or(false);
            if !ok {
                return Err(ConfigError(
                    "GATEHOUSE_REDIS_URL: expected redis://host:port or rediss://host:port".into(),
                ));
            }
        }
        if !CATALOGS.contains(&self.catalog.as_str()) {
            return Err(ConfigError(format!(
                "GATEHOUSE_CATALOG: unknown catalog {:?}; expected one of {}",
                self.catalog,
                CATALOGS.join(", ")
            )));
        }
        if !(50..=1000).contains(&self.poll_interval_ms) {
            return Err(ConfigError(
                "GATEHOUSE_POLL_INTERVAL_MS: must be between 50 and 1000".into(),
            ));
        }
        for (name, value) in [
            (
                "GATEHOUSE_ACCESS_TOKEN_TTL_SECS",
                self.access_token_ttl_secs,
            ),
            ("GATEHOUSE_ID_TOKEN_TTL_SECS", self.id_token_ttl_secs),
            (
                "GATEHOUSE_REFRESH_TOKEN_TTL_SECS",
                self.refresh_token_ttl_secs,
            ),
            ("GATEHOUSE_SESSION_TTL_SECS", self.session_ttl_secs),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("{name}: must be at least 1")));
            }
        }
        if self.session_ttl_secs > 2_592_000 {
            return Err(ConfigError(
                "GATEHOUSE_SESSION_TTL_SECS: must be at most 2592000 (30 days)".into(),
            ));
        }
        if self.refresh_reuse_grace_secs > 5 {
            return Err(ConfigError(
                "GATEHOUSE_REFRESH_REUSE_GRACE_SECS: must be between 0 and 5".into(),
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for (i, p) in self.federation.providers.iter().enumerate() {
            p.validate()
                .map_err(|e| ConfigError(format!("federation.providers[{i}].{e}")))?;
            if !ids.insert(p.id.as_str()) {
                return Err(ConfigError(format!(
                    "federation.providers[{i}].id: {:?} is used twice",
                    p.id
                )));
            }
        }
        if !(5..=86_400).contains(&self.federation_refresh_secs) {
            return Err(ConfigError(
                "GATEHOUSE_FEDERATION_REFRESH_SECS: must be between 5 and 86400".into(),
            ));
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError(
                "GATEHOUSE_DATABASE_MAX_CONNECTIONS: must be at least 1".into(),
            ));
        }
        if self.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError(format!(
                "GATEHOUSE_MAIL_FROM: {:?} is not a mailbox like `gatehouse <noreply@example.com>`",
                self.mail_from
            )));
        }
        if let Some(url) = &self.smtp_url
            && !(url.0.starts_with("smtp://") || url.0.starts_with("smtps://"))
        {
            return Err(ConfigError(
                "GATEHOUSE_SMTP_URL: must start with smtp:// or smtps://".into(),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| ConfigError(format!("GATEHOUSE_LOG: {e}")))?;
        Ok(())
    }

    /// The issuer URL, derived from the listen address when not set.
    pub fn issuer(&self) -> String {
        match &self.issuer {
            Some(i) => i.clone(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(s) => s.0.clone(),
            None => format!("sqlite://{}", self.data_dir.join("gatehouse.db").display()),
        }
    }

    /// The longest lifetime of any token a signing key signs; an old key stays
    /// published this long after it stops signing.
    pub fn max_signed_token_ttl_secs(&self) -> u64 {
        self.access_token_ttl_secs.max(self.id_token_ttl_secs)
    }
}

/// The line of an unknown top-level key (toml reports the whole table's span).
fn unknown_key_line(message: &str, text: &str) -> Option<usize> {
    let key = message.strip_prefix("unknown field `")?.split('`').next()?;
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// Tells which backend a database URL names, or why it names none.
pub fn database_kind(url: &str) -> Result<DatabaseKind, ConfigError> {
    if url.starts_with("sqlite:") {
        return Ok(DatabaseKind::Sqlite);
    }
    let ok = url::Url::parse(url)
        .map(|u| matches!(u.scheme(), "postgres" | "postgresql") && u.host().is_some())
        .unwrap_or(false);
    if ok {
        Ok(DatabaseKind::Postgres)
    } else {
        Err(ConfigError(
            "GATEHOUSE_DATABASE_URL: expected sqlite://<path> or postgres://user@host/db".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(file: Option<&str>, env: &[(&str, &str)]) -> String {
        Config::from_sources(file.map(|t| (Path::new("g.toml"), t)), &vars(env))
            .expect_err("must fail")
            .0
    }

    #[test]
    fn defaults_are_the_embedded_ones() {
        let c = Config::from_sources(None, &[]).expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.issuer(), "http://127.0.0.1:8080");
        assert_eq!(c.database_url(), "sqlite://./data/gatehouse.db");
        assert!(c.redis_url.is_none());
        assert_eq!(c.signing_alg, SigningAlg::RS256);
    }

    #[test]
    fn environment_wins_over_file() {
        let file = "listen = \"127.0.0.1:9000\"\ncatalog = \"stackpath\"\n";
        let c = Config::from_sources(
            Some((Path::new("g.toml"), file)),
            &vars(&[("GATEHOUSE_LISTEN", "127.0.0.1:9100")]),
        )
        .expect("valid");
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.catalog, "stackpath");
    }

    #[test]
    fn every_error_names_its_setting() {
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            (Some("lisen = \"x\""), &[], "unknown field `lisen`"),
            (
                Some("log = \"info\"\n  lisen = 1"),
                &[],
                "line 2: unknown field `lisen`",
            ),
            (Some("\n\nlisten = 5"), &[], "line 3"),
            (None, &[("GATEHOUSE_LISTEN", "nope")], "GATEHOUSE_LISTEN"),
            (
                None,
                &[("GATEHOUSE_FOO", "1")],
                "GATEHOUSE_FOO: unknown setting",
            ),
            (
                None,
                &[("GATEHOUSE_DATABASE_URL", "mysql://x/y")],
                "GATEHOUSE_DATABASE_URL",
            ),
            (
                None,
                &[("GATEHOUSE_REDIS_URL", "http://x")],
                "GATEHOUSE_REDIS_URL",
            ),
            (
                None,
                &[("GATEHOUSE_ISSUER", "http://example.com")],
                "GATEHOUSE_ISSUER: http is allowed only on loopback",
            ),
            (
                None,
                &[("GATEHOUSE_ISSUER", "https://example.com/")],
                "trailing slash",
            ),
            (None, &[("GATEHOUSE_CATALOG", "aws")], "GATEHOUSE_CATALOG"),
            (
                None,
                &[("GATEHOUSE_SIGNING_ALG", "HS256")],
                "GATEHOUSE_SIGNING_ALG: expected one of RS256, ES256, EdDSA",
            ),
            (
                None,
                &[("GATEHOUSE_POLL_INTERVAL_MS", "5000")],
                "GATEHOUSE_POLL_INTERVAL_MS",
            ),
            (
                None,
                &[("GATEHOUSE_ACCESS_TOKEN_TTL_SECS", "-1")],
                "GATEHOUSE_ACCESS_TOKEN_TTL_SECS",
            ),
        ];
        for (file, env, want) in cases {
            let got = err(*file, env);
            assert!(got.contains(want), "{got:?} should contain {want:?}");
            assert!(!got.contains('\n'), "one line: {got:?}");
        }
    }

    #[test]
    fn the_readme_documents_every_setting() {
        let readme = include_str!("../README.md");
        for (key, env, doc) in SETTINGS {
            assert!(
                readme.contains(&format!("| `{key}` | `{env}` |")),
                "README configuration reference lacks {key} / {env}"
            );
            assert!(!doc.is_empty(), "{key} has a doc comment");
        }
    }

    #[test]
    fn trusted_proxies_from_file_and_environment() {
        let c = Config::from_sources(
            Some((
                Path::new("g.toml"),
                "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]",
            )),
            &[],
        )
        .expect("file");
        assert_eq!(c.trusted_proxies.len(), 2);
        let c = Config::from_sources(
            None,
            &vars(&[("GATEHOUSE_TRUSTED_PROXIES", "127.0.0.1, 192.168.0.0/16")]),
        )
        .expect("env");
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(
            err(None, &[("GATEHOUSE_TRUSTED_PROXIES", "10.0.0.0/99")])
                .contains("GATEHOUSE_TRUSTED_PROXIES")
        );
        assert!(err(Some("trusted_proxies = [\"nope\"]"), &[]).contains("nope"));
    }

    #[test]
    fn apis_come_from_the_file() {
        let file = "[[apis]]\nidentifier = \"https://storage.example\"\ndisplay_name = \"Storage\"\n\
                    permissions = [{ name = \"object-storage.buckets.read\", description = \"Read buckets\" }]\n";
        let c = Config::from_sources(Some((Path::new("g.toml"), file)), &[]).expect("valid");
        assert_eq!(c.apis.len(), 1);
        assert_eq!(c.apis[0].permissions[0].name, "object-storage.buckets.read");
        let bad = "[[apis]]\nidentifier = \"x\"\ndisplay_name = \"y\"\nscopes = []\n";
        assert!(err(Some(bad), &[]).contains("unknown field `scopes`"));
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = Config::from_sources(
            None,
            &vars(&[("GATEHOUSE_KEY_ENCRYPTION_KEY", "super-secret-value")]),
        )
        .expect("valid");
        assert!(!format!("{c:?}").contains("super-secret-value"));
    }

    #[test]
    fn non_setting_variables_are_accepted() {
        Config::from_sources(
            None,
            &vars(&[
                ("GATEHOUSE_BOOTSTRAP_PASSWORD", "x"),
                ("GATEHOUSE_TEST_DATABASE_URL", "postgres://x/y"),
            ]),
        )
        .expect("valid");
    }
}
