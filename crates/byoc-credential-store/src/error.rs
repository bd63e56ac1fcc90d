//! The repository's typed errors.

use crate::model::InvalidValue;

/// What a stored value collided with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictKind {
    /// The organization already has a credential of this type with this display name
    /// (field `displayName`).
    DisplayName,
    /// A credential with this id already exists.
    CredentialId,
    /// The user is already a member of the organization.
    Member,
    /// An OAuth state with this id already exists.
    OAuthState,
    /// A message with this provider message id is already recorded.
    SmsMessage,
    /// The master key version is already in `master_keys`.
    MasterKeyVersion,
}

impl ConflictKind {
    /// The field (in the API's camelCase) that collided.
    pub fn field(self) -> &'static str {
        match self {
            ConflictKind::DisplayName => "displayName",
            ConflictKind::CredentialId => "id",
            ConflictKind::Member => "userId",
            ConflictKind::OAuthState => "state",
            ConflictKind::SmsMessage => "providerMessageSid",
            ConflictKind::MasterKeyVersion => "key_version",
        }
    }
}

/// Why a repository call failed.
///
/// Messages never contain a secret or an envelope. A database that cannot be reached is always
/// [`StoreError::Unavailable`], never [`StoreError::NotFound`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist in the tenant's organization (rows of other organizations are reported the same).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: &'static str,
    },
    /// The value collides with an existing row.
    #[error("conflict: {} already exists", .what.field())]
    Conflict {
        /// What collided.
        what: ConflictKind,
    },
    /// The actor's role (or lack of membership, or being a service) does not allow this.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why.
        reason: &'static str,
    },
    /// The database refused the statement for the role the store connected as: a missing privilege or schema
    /// right, a row-level security check, a login that may not act as a service or run operator commands.
    /// The message is the database's own (or the store's, naming the grant that is missing); it names objects,
    /// never values.
    #[error("the database refused this for the connected role: {message}")]
    Denied {
        /// What was refused and why.
        message: String,
    },
    /// A value is outside what the store accepts.
    #[error("invalid value: {0}")]
    Invalid(#[from] InvalidValue),
    /// The database could not be reached (connection refused or lost, pool timed out or closed).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else: a bug, a schema mismatch or a stored value this version cannot read.
    #[error("internal store error: {context}")]
    Internal {
        /// What was being done.
        context: String,
        /// The underlying error, if any.
        #[source]
        source: Option<sqlx::Error>,
    },
}

impl StoreError {
    /// An internal error without an underlying database error.
    pub(crate) fn internal(context: impl Into<String>) -> Self {
        StoreError::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// Maps a database error: connection problems become `Unavailable`, unique violations `Conflict`
    /// (the constraint says what collided), privilege and row-security refusals `Denied` with the database's
    /// message, the rest `Internal`.
    pub(crate) fn from_sqlx(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => return StoreError::Unavailable(error),
            sqlx::Error::Database(database_error) => {
                let code = database_error.code().unwrap_or_default();
                if database_error.is_unique_violation() {
                    // Postgres names the constraint; SQLite names the table and columns in its message.
                    let names = format!(
                        "{} {}",
                        database_error.constraint().unwrap_or_default(),
                        database_error.message()
                    );
                    if let Some(what) = conflict_kind(&names) {
                        return StoreError::Conflict { what };
                    }
                }
                // Postgres: connection exceptions (08), insufficient resources (53), operator intervention (57);
                // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6), SQLITE_CANTOPEN (14).
                let postgres_class = if code.len() == 5 { &code[..2] } else { "" };
                if matches!(postgres_class, "08" | "53" | "57")
                    || matches!(code.as_ref(), "5" | "6" | "14" | "261" | "517")
                {
                    return StoreError::Unavailable(error);
                }
                // 42501 insufficient_privilege, also raised for a row-level security violation.
                if code == "42501" {
                    return StoreError::Denied {
                        message: database_error.message().to_owned(),
                    };
                }
            }
            _ => {}
        }
        StoreError::Internal {
            context: "database error".to_owned(),
            source: Some(error),
        }
    }
}

fn conflict_kind(names: &str) -> Option<ConflictKind> {
    if names.contains("display_name") {
        Some(ConflictKind::DisplayName)
    } else if names.contains("organization_api_credentials") {
        Some(ConflictKind::CredentialId)
    } else if names.contains("organization_members") {
        Some(ConflictKind::Member)
    } else if names.contains("oauth_states") {
        Some(ConflictKind::OAuthState)
    } else if names.contains("sms_messages") {
        Some(ConflictKind::SmsMessage)
    } else if names.contains("master_keys") {
        Some(ConflictKind::MasterKeyVersion)
    } else {
        None
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::from_sqlx(error)
    }
}

/// The result type of the repository.
pub type StoreResult<T> = Result<T, StoreError>;

/// Maps a migration failure: a database error keeps its classification and, when it is internal, the
/// database's message and hint in the context (so `byoc migrate` names the cause in one line); anything else
/// (a migration that was changed after it was applied, a missing one) is internal.
pub(crate) fn from_migrate_error(error: sqlx::migrate::MigrateError) -> StoreError {
    match error {
        sqlx::migrate::MigrateError::Execute(error)
        | sqlx::migrate::MigrateError::ExecuteMigration(error, _) => {
            let cause = match &error {
                sqlx::Error::Database(database_error) => Some(format!(
                    "{}{}",
                    database_error.message(),
                    hint_of(database_error.as_ref())
                )),
                _ => None,
            };
            match (StoreError::from_sqlx(error), cause) {
                (StoreError::Internal { source, .. }, Some(cause)) => StoreError::Internal {
                    context: format!("migration failed: {cause}"),
                    source,
                },
                (mapped, _) => mapped,
            }
        }
        other => StoreError::internal(format!("migration failed: {other}")),
    }
}

/// A Postgres error's hint, as ` (hint)`, or nothing.
#[cfg(feature = "postgres")]
fn hint_of(error: &dyn sqlx::error::DatabaseError) -> String {
    error
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|postgres| postgres.hint())
        .map(|hint| format!(" ({hint})"))
        .unwrap_or_default()
}

/// Only Postgres errors carry a hint.
#[cfg(not(feature = "postgres"))]
fn hint_of(_error: &dyn sqlx::error::DatabaseError) -> String {
    String::new()
}
