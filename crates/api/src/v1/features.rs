//! Hypervisor features of a domain (`spec.domain.features`): ACPI, APIC, SMM, paravirtual
//! spinlocks, KVM hiding and the Hyper-V enlightenments. Instancetype preferences reuse these.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The hypervisor features the guest may use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Features {
    /// ACPI support (on by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acpi: Option<FeatureState>,
    /// The local APIC (on by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apic: Option<FeatureAPIC>,
    /// Individual Hyper-V enlightenments for Windows guests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperv: Option<FeatureHyperv>,
    /// Turn on every Hyper-V enlightenment the host supports (excludes `hyperv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperv_passthrough: Option<HyperVPassthrough>,
    /// KVM-specific settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kvm: Option<FeatureKVM>,
    /// Paravirtual spinlocks (on by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvspinlock: Option<FeatureState>,
    /// System Management Mode, needed by EFI Secure Boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smm: Option<FeatureState>,
}

/// A feature that is either on or off.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureState {
    /// Whether the feature is on (default true once the feature is listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// The APIC feature.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureAPIC {
    /// Whether the APIC is on (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Let the guest signal end-of-interrupt without a VM exit (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_interrupt: Option<bool>,
}

/// Turn on all Hyper-V enlightenments the host offers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HyperVPassthrough {
    /// Whether passthrough is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// KVM-specific features.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureKVM {
    /// Hide the KVM signature from the guest (default false), e.g. for drivers that refuse VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<bool>,
}

/// Hyper-V enlightenments: paravirtual interfaces that speed up Windows guests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeatureHyperv {
    /// Enlightened VMCS for nested virtualization (needs vapic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evmcs: Option<FeatureState>,
    /// Expose TSC and APIC frequencies through Hyper-V MSRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequencies: Option<FeatureState>,
    /// Paravirtual inter-processor interrupts (needs vpindex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipi: Option<FeatureState>,
    /// Notify the guest when the TSC frequency changes, e.g. after migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reenlightenment: Option<FeatureState>,
    /// Tell the guest not to treat long host-side stalls as watchdog timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relaxed: Option<FeatureState>,
    /// Let the guest reset the machine through Hyper-V MSRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<FeatureState>,
    /// Report the virtual processor run time to the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<FeatureState>,
    /// Paravirtual spinlocks with a retry count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spinlocks: Option<FeatureSpinlocks>,
    /// The synthetic interrupt controller (needs vpindex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synic: Option<FeatureState>,
    /// Synthetic timers (needs synic and the Hyper-V clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synictimer: Option<SyNICTimer>,
    /// Paravirtual TLB flushes (needs vpindex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlbflush: Option<TLBFlush>,
    /// A paravirtual APIC interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vapic: Option<FeatureState>,
    /// A custom hypervisor vendor id shown to the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendorid: Option<FeatureVendorID>,
    /// Expose virtual processor indexes to the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpindex: Option<FeatureState>,
}

/// The Hyper-V spinlock enlightenment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureSpinlocks {
    /// Whether the enlightenment is on (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How often a spinlock is retried before the guest yields to the host (at least 4095;
    /// default 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spinlocks: Option<i32>,
}

/// The Hyper-V vendor id enlightenment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureVendorID {
    /// Whether the custom vendor id is used (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The vendor id, at most 12 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendorid: Option<String>,
}

/// The Hyper-V synthetic timer enlightenment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyNICTimer {
    /// Deliver timer expirations directly as interrupts instead of through SynIC messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<FeatureState>,
    /// Whether synthetic timers are on (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// The Hyper-V TLB flush enlightenment.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TLBFlush {
    /// Let the hypervisor flush TLBs of nested guests directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<FeatureState>,
    /// Whether paravirtual TLB flushes are on (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Also accept the extended (ranged) flush hypercalls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended: Option<FeatureState>,
}
