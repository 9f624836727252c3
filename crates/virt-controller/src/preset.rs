//! VirtualMachineInstancePresets (deprecated upstream, still served): domain settings merged
//! into every new instance whose labels the preset's selector matches, as upstream's VMI
//! mutating webhook does. Until virt-api runs that webhook here, the VMI controller applies
//! them when it first sees an instance (see `vmi::admit`).

use kube::ResourceExt;
use kubevirt_api::v1::{DomainSpec, VirtualMachineInstance, VirtualMachineInstancePreset};

use crate::names;
use crate::selector;

/// The presets (of the instance's namespace) whose selectors match its labels.
pub fn matching<'a>(
    presets: &[&'a VirtualMachineInstancePreset],
    vmi: &VirtualMachineInstance,
) -> Result<Vec<&'a VirtualMachineInstancePreset>, selector::SelectorError> {
    let mut out = Vec::new();
    for p in presets {
        if p.namespace() == vmi.namespace() && selector::matches(&p.spec.selector, vmi.labels())? {
            out.push(*p);
        }
    }
    out.sort_by_key(|p| p.name_any());
    Ok(out)
}

fn conflicts(preset: &DomainSpec, vmi: &DomainSpec) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(p), Some(v)) = (&preset.resources, &vmi.resources) {
        for (k, q) in &p.requests {
            if let Some(vq) = v.requests.get(k)
                && vq != q
            {
                out.push(format!("spec.resources.requests[{k}]: {} != {}", q.0, vq.0));
            }
        }
    }
    let mut differ = |field: &str, a: bool| {
        if a {
            out.push(format!("{field} differs"));
        }
    };
    differ(
        "spec.cpu",
        preset.cpu.is_some() && vmi.cpu.is_some() && preset.cpu != vmi.cpu,
    );
    differ(
        "spec.firmware",
        preset.firmware.is_some() && vmi.firmware.is_some() && preset.firmware != vmi.firmware,
    );
    if let (Some(p), Some(v)) = (&preset.clock, &vmi.clock) {
        differ("spec.clock.clockoffset", p.clock_offset != v.clock_offset);
        differ(
            "spec.clock.timer",
            p.timer.is_some() && v.timer.is_some() && p.timer != v.timer,
        );
    }
    differ(
        "spec.features",
        preset.features.is_some() && vmi.features.is_some() && preset.features != vmi.features,
    );
    differ(
        "spec.devices.watchdog",
        preset.devices.watchdog.is_some()
            && vmi.devices.watchdog.is_some()
            && preset.devices.watchdog != vmi.devices.watchdog,
    );
    differ(
        "spec.ioThreadsPolicy",
        preset.io_threads_policy.is_some()
            && vmi.io_threads_policy.is_some()
            && preset.io_threads_policy != vmi.io_threads_policy,
    );
    out
}

fn fill<T: Clone + PartialEq>(target: &mut Option<T>, preset: &Option<T>, applied: &mut bool) {
    if let Some(p) = preset {
        if target.is_none() {
            *target = Some(p.clone());
        }
        if target.as_ref() == Some(p) {
            *applied = true;
        }
    }
}

/// Merges one preset's domain into the instance's; whether anything of it took effect.
fn merge(preset: &DomainSpec, vmi: &mut DomainSpec) -> bool {
    let mut applied = false;
    if let Some(p) = preset.resources.as_ref().filter(|r| !r.requests.is_empty()) {
        let res = vmi.resources.get_or_insert_with(Default::default);
        if res.requests.is_empty() {
            res.requests = p.requests.clone();
        }
        if res.requests == p.requests {
            applied = true;
        }
    }
    fill(&mut vmi.cpu, &preset.cpu, &mut applied);
    fill(&mut vmi.firmware, &preset.firmware, &mut applied);
    if let Some(p) = &preset.clock {
        let clock = vmi.clock.get_or_insert_with(|| kubevirt_api::v1::Clock {
            clock_offset: p.clock_offset.clone(),
            timer: None,
        });
        fill(&mut clock.timer, &p.timer, &mut applied);
        if clock == p {
            applied = true;
        }
    }
    fill(&mut vmi.features, &preset.features, &mut applied);
    fill(
        &mut vmi.devices.watchdog,
        &preset.devices.watchdog,
        &mut applied,
    );
    fill(
        &mut vmi.io_threads_policy,
        &preset.io_threads_policy,
        &mut applied,
    );
    applied
}

/// Applies the matching presets to a new instance (unless it opts out), annotating each one
/// applied. Presets that conflict with each other are an error naming them.
pub fn apply(
    vmi: &mut VirtualMachineInstance,
    presets: &[&VirtualMachineInstancePreset],
) -> Result<Vec<String>, String> {
    if vmi
        .annotations()
        .get(names::PRESET_EXCLUDE_ANNOTATION)
        .map(String::as_str)
        == Some("true")
    {
        return Ok(Vec::new());
    }
    let found = matching(presets, vmi).map_err(|e| e.to_string())?;
    let mut errors = Vec::new();
    for (i, a) in found.iter().enumerate() {
        for b in &found[..i] {
            let (Some(ad), Some(bd)) = (&a.spec.domain, &b.spec.domain) else {
                continue;
            };
            let c = conflicts(ad, bd);
            if !c.is_empty() {
                errors.push(format!(
                    "presets '{}' and '{}' conflict: [{}]",
                    a.name_any(),
                    b.name_any(),
                    c.join(", ")
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(format!(
            "VirtualMachinePresets cannot be applied due to conflicts: {}",
            errors.join(", ")
        ));
    }
    let mut applied = Vec::new();
    for p in found {
        let Some(domain) = &p.spec.domain else {
            continue;
        };
        if merge(domain, &mut vmi.spec.domain) {
            vmi.annotations_mut().insert(
                format!("{}{}", names::PRESET_ANNOTATION_PREFIX, p.name_any()),
                "kubevirt.io/v1".into(),
            );
            applied.push(p.name_any());
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use kubevirt_api::v1::{CPU, ResourceRequirements, VirtualMachineInstancePresetSpec};

    use super::*;

    fn preset(name: &str, label: &str, domain: DomainSpec) -> VirtualMachineInstancePreset {
        VirtualMachineInstancePreset {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: VirtualMachineInstancePresetSpec {
                domain: Some(domain),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("flavor".into(), label.into())])),
                    ..Default::default()
                },
            },
        }
    }

    fn vmi(label: &str) -> VirtualMachineInstance {
        VirtualMachineInstance {
            metadata: ObjectMeta {
                name: Some("v".into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([("flavor".into(), label.into())])),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn memory(q: &str) -> DomainSpec {
        DomainSpec {
            resources: Some(ResourceRequirements {
                requests: BTreeMap::from([("memory".into(), Quantity(q.into()))]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn matching_presets_are_merged_and_annotated() {
        let small = preset("small", "small", memory("64Mi"));
        let cpu = preset(
            "cpu",
            "small",
            DomainSpec {
                cpu: Some(CPU {
                    cores: Some(2),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let other = preset("big", "big", memory("1Gi"));
        let mut v = vmi("small");
        let applied = apply(&mut v, &[&small, &cpu, &other]).unwrap();
        assert_eq!(applied, ["cpu", "small"]);
        assert_eq!(
            v.spec.domain.resources.unwrap().requests["memory"].0,
            "64Mi"
        );
        assert_eq!(v.spec.domain.cpu.unwrap().cores, Some(2));
        assert_eq!(
            v.metadata.annotations.unwrap()["virtualmachinepreset.kubevirt.io/small"],
            "kubevirt.io/v1"
        );
    }

    #[test]
    fn the_instances_own_values_win_and_conflicting_presets_fail() {
        let mut v = vmi("small");
        v.spec.domain = memory("128Mi");
        let applied = apply(&mut v, &[&preset("small", "small", memory("64Mi"))]).unwrap();
        assert!(applied.is_empty());
        assert_eq!(
            v.spec.domain.resources.unwrap().requests["memory"].0,
            "128Mi"
        );
        let err = apply(
            &mut vmi("small"),
            &[
                &preset("a", "small", memory("64Mi")),
                &preset("b", "small", memory("1Gi")),
            ],
        )
        .unwrap_err();
        assert!(err.contains("presets 'b' and 'a' conflict"), "{err}");
        let mut excluded = vmi("small");
        excluded
            .annotations_mut()
            .insert(names::PRESET_EXCLUDE_ANNOTATION.into(), "true".into());
        assert!(
            apply(&mut excluded, &[&preset("small", "small", memory("64Mi"))])
                .unwrap()
                .is_empty()
        );
    }
}
