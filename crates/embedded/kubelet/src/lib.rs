//! The embedded kubelet.
