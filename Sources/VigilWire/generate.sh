#!/usr/bin/env bash
# Regenerates Sources/VigilWire/Generated/vigil.pb.swift from vigil.proto.
# Needs protoc (Debian: protobuf-compiler) and protoc-gen-swift built from swift-protobuf
# (the same version as Package.swift resolves): put it on PATH or set PROTOC_GEN_SWIFT.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
plugin=${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift || true)}
if [ -z "$plugin" ]; then
    echo "generate.sh: protoc-gen-swift not found; build it with" >&2
    echo "  git clone https://github.com/apple/swift-protobuf && cd swift-protobuf && swift build -c release --product protoc-gen-swift" >&2
    echo "and set PROTOC_GEN_SWIFT=/path/to/.build/release/protoc-gen-swift" >&2
    exit 1
fi
mkdir -p "$here/Generated"
protoc --plugin=protoc-gen-swift="$plugin" \
    --proto_path="$here" \
    --swift_opt=Visibility=Public \
    --swift_out="$here/Generated" \
    "$here/vigil.proto"
echo "wrote $here/Generated/vigil.pb.swift"
