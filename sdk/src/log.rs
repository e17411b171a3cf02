//! Messages for the host log, tagged by the host with tenant and binding.

use crate::wit::log as w;

/// Logs at debug level.
pub fn debug(message: &str) {
    w::log(w::Level::Debug, message)
}

/// Logs at info level.
pub fn info(message: &str) {
    w::log(w::Level::Info, message)
}

/// Logs at warn level.
pub fn warn(message: &str) {
    w::log(w::Level::Warn, message)
}

/// Logs at error level.
pub fn error(message: &str) {
    w::log(w::Level::Error, message)
}
