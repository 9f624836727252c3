//! TODO(stub): filled in by the types work.
