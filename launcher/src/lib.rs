//! vmlan launcher
