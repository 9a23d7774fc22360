#!/usr/bin/env python3
"""Code size of a wasm module by what it is made of, from its name section.

Usage: scripts/wasm-size.py MODULE.wasm [TOP]
Build the module unstripped first, so it keeps function names:
  CARGO_PROFILE_WASM_STRIP=false cargo build --target wasm32-wasip1 --profile wasm \
    --target-dir target/wasm-sym -p wasmesh-headers
Prints code bytes per category (before wasm-opt) and, with TOP, the largest functions.
"""
import collections
import re
import sys

# First match wins: generic serde code is named after the type it serves, so serde
# comes before the crates whose types it deserializes.
CATEGORIES = [
    ("serde", r"serde"),
    ("regex", r"regex_lite"),
    ("float formatting", r"flt2dec|zmij|float"),
    ("hashbrown", r"hashbrown"),
    ("formatting", r"core..fmt|4core3fmt|fmt"),
    ("proxy-wasm", r"proxy_wasm"),
    ("sdk", r"wasmesh_sdk"),
    ("filter", r"wasmesh_"),
    ("allocator and alloc", r"alloc|dlmalloc|dlfree|malloc|dispose_chunk"),
    ("std and core", r"std|core"),
]


def leb(data, i):
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def functions(data):
    """(name, body bytes) of every defined function."""
    i, imported, bodies, names = 8, 0, [], {}
    while i < len(data):
        section = data[i]
        size, i = leb(data, i + 1)
        end = i + size
        if section == 2:  # imports: function indices start after imported functions
            count, j = leb(data, i)
            for _ in range(count):
                for _ in range(2):  # module and field names
                    length, j = leb(data, j)
                    j += length
                kind = data[j]
                j += 1
                if kind == 0:
                    _, j = leb(data, j)
                    imported += 1
                elif kind == 1:
                    j += 1
                    flags, j = leb(data, j)
                    _, j = leb(data, j)
                    if flags & 1:
                        _, j = leb(data, j)
                elif kind == 2:
                    flags, j = leb(data, j)
                    _, j = leb(data, j)
                    if flags & 1:
                        _, j = leb(data, j)
                else:
                    j += 2
        elif section == 10:  # code
            count, j = leb(data, i)
            for _ in range(count):
                length, k = leb(data, j)
                bodies.append(length + (k - j))
                j = k + length
        elif section == 0:  # custom: the name section's function names
            length, j = leb(data, i)
            if data[j : j + length] == b"name":
                j += length
                while j < end:
                    sub = data[j]
                    sub_size, j = leb(data, j + 1)
                    if sub == 1:
                        count, k = leb(data, j)
                        for _ in range(count):
                            index, k = leb(data, k)
                            length, k = leb(data, k)
                            names[index] = data[k : k + length].decode("utf-8", "replace")
                            k += length
                    j += sub_size
        i = end
    return [(names.get(imported + n, f"#{n}"), size) for n, size in enumerate(bodies)]


def main():
    data = open(sys.argv[1], "rb").read()
    funcs = functions(data)
    total = sum(size for _, size in funcs)
    by = collections.Counter()
    for name, size in funcs:
        category = next((c for c, p in CATEGORIES if re.search(p, name)), "other")
        by[category] += size
    print(f"code {total} bytes in {len(funcs)} functions")
    for category, size in by.most_common():
        print(f"{size:9d} {100 * size / total:5.1f}%  {category}")
    if len(sys.argv) > 2:
        for name, size in sorted(funcs, key=lambda f: -f[1])[: int(sys.argv[2])]:
            print(f"{size:9d}  {name[:150]}")


if __name__ == "__main__":
    main()
