#!/usr/bin/env python3
"""Extracts the protobuf field numbers of the Kubernetes API types from the k8s-pb crate's
generated bindings (the wire format's facts: message, field number, field name, wire kind),
into src/protobuf/fields.tsv. kubectl sends built-in objects as protobuf; the server transcodes
them to JSON with this table and the JSON schemas of the k8s-openapi types.

Usage: tools/protofields.py ~/.cargo/registry/src/*/k8s-pb-0.9.0/src > src/protobuf/fields.tsv
"""
import os
import re
import sys

root = sys.argv[1]
attr_re = re.compile(r'#\[prost\((.*)\)\]')
field_re = re.compile(r'pub (r#)?(\w+): (.*),\s*$')
struct_re = re.compile(r'pub struct (\w+) \{')

def resolve(module, ty):
    # Strip wrappers, then resolve super:: paths against the module path.
    for w in ['::core::option::Option<', '::prost::alloc::vec::Vec<', '::prost::alloc::boxed::Box<']:
        while w in ty:
            ty = ty.replace(w, '', 1)
            ty = ty[:-1] if ty.endswith('>') else ty
    ty = ty.replace(',>', '>').replace(', >', '>')
    m = re.search(r'BTreeMap<[^,]+,\s*(.*)>$', ty)
    if m:
        ty = m.group(1)
    parts = module.split('.')
    segs = ty.split('::')
    out = list(parts)
    for s in segs:
        if s == 'super':
            out = out[:-1]
        elif s == 'self' or s == '':
            continue
        else:
            out.append(s)
    return '.'.join(out)

rows = []
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith('.rs') or f == 'lib.rs':
            continue
        rel = os.path.relpath(os.path.join(dirpath, f), root)
        module = rel[:-len('/mod.rs')] if rel.endswith('/mod.rs') else rel[:-3]
        module = module.replace('/', '.')
        struct = None
        attr = None
        # Join a field's type that rustfmt wrapped over several lines into one line.
        lines = []
        pending = None
        for raw in open(os.path.join(dirpath, f)):
            if pending is not None:
                pending += ' ' + raw.strip()
                if pending.count('<') == pending.count('>') and pending.endswith(','):
                    lines.append(pending + '\n')
                    pending = None
                continue
            st = raw.strip()
            if st.startswith('pub ') and ':' in st and not st.endswith(',') and not st.endswith('{'):
                pending = raw.rstrip('\n')
                continue
            lines.append(raw)
        for line in lines:
            sm = struct_re.search(line)
            if sm and not line.startswith(' '):
                struct = sm.group(1)
                continue
            am = attr_re.search(line)
            if am:
                attr = am.group(1)
                continue
            fm = field_re.search(line)
            if fm and attr and struct:
                name, ty = fm.group(2), fm.group(3)
                tag = re.search(r'tag = "(\d+)"', attr).group(1)
                kind = attr.split(',')[0].strip()
                label = 'repeated' if 'repeated' in attr else ('map' if 'map' in kind else 'optional')
                if 'map' in kind:
                    kind = 'map:' + re.search(r'map = "([^"]+)"', attr).group(1).replace(' ', '')
                if kind.startswith('bytes'):
                    kind = 'bytes'
                ref = ''
                if kind == 'message' or kind.endswith(',message'):
                    ref = resolve(module, ty)
                rows.append((module + '.' + struct, tag, name, kind, label, ref))
                attr = None
for r in sorted(r for r in rows if not r[0].startswith("metrics.")):
    print('\t'.join(r))
