import Foundation
import Yams

/// Finds and reads rule files: `.yml`/`.yaml` under the given files and directories,
/// recursively, skipping hidden entries and `collection.yaml` (collection settings, read by
/// `CollectionSettings`).
enum PolicySource {
    static let maximumFileBytes = 1 << 20
    static let maximumFlowNesting = 64

    static func ruleFiles(in paths: [String]) -> (files: [String], errors: [PolicyError]) {
        var files: [String] = []
        var errors: [PolicyError] = []
        let fm = FileManager.default
        for path in paths {
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else {
                errors.append(PolicyError(file: path, line: 1, column: 1, message: "no such file or directory"))
                continue
            }
            guard isDirectory.boolValue else {
                files.append(path)
                continue
            }
            guard let walker = fm.enumerator(atPath: path) else {
                errors.append(PolicyError(file: path, line: 1, column: 1, message: "cannot read directory"))
                continue
            }
            var found: [String] = []
            while let relative = walker.nextObject() as? String {
                let name = (relative as NSString).lastPathComponent
                if name.hasPrefix(".") {
                    walker.skipDescendants()
                    continue
                }
                guard name.hasSuffix(".yml") || name.hasSuffix(".yaml"), name != CollectionSettings.fileName else {
                    continue
                }
                let full = (path as NSString).appendingPathComponent(relative)
                var isDir: ObjCBool = false
                if fm.fileExists(atPath: full, isDirectory: &isDir), !isDir.boolValue { found.append(full) }
            }
            files += found.sorted()
        }
        return (files, errors)
    }

    /// The YAML documents of one file, refusing oversized, non-UTF-8 or deeply nested input
    /// before the YAML parser sees it.
    static func documents(file: String) throws(PolicyError) -> [Node] {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw PolicyError(file: file, line: 1, column: 1, message: "cannot read file")
        }
        guard data.count <= maximumFileBytes else {
            throw PolicyError(file: file, line: 1, column: 1, message: "file is larger than \(maximumFileBytes) bytes")
        }
        return try documents(bytes: [UInt8](data), file: file)
    }

    static func documents(bytes: [UInt8], file: String) throws(PolicyError) -> [Node] {
        guard bytes.count <= maximumFileBytes else {
            throw PolicyError(file: file, line: 1, column: 1, message: "file is larger than \(maximumFileBytes) bytes")
        }
        let text = try decodeUTF8(bytes, file: file)
        try checkNesting(bytes, file: file)
        do {
            var nodes: [Node] = []
            var sequence = try Yams.compose_all(yaml: text)
            while let node = sequence.next() { nodes.append(node) }
            if let error = sequence.error { throw error }
            return nodes
        } catch {
            throw PolicyError(file: file, yamlError: error)
        }
    }

    /// Decodes UTF-8, locating the first invalid byte.
    static func decodeUTF8(_ bytes: [UInt8], file: String) throws(PolicyError) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        var line = 1
        var column = 1
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            let length =
                b < 0x80 ? 1 : b >= 0xC2 && b < 0xE0 ? 2 : b >= 0xE0 && b < 0xF0 ? 3 : b >= 0xF0 && b < 0xF5 ? 4 : 0
            guard length > 0, i + length <= bytes.count,
                String(validating: bytes[i..<(i + length)], as: UTF8.self) != nil
            else { break }
            if b == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else {
                column += 1
            }
            i += length
        }
        throw PolicyError(file: file, line: line, column: column, message: "not valid UTF-8")
    }

    /// Refuses flow collections (`[`, `{`) nested deeper than `maximumFlowNesting`: the YAML
    /// composer recurses per level. (Block nesting is bounded by the file size limit.)
    static func checkNesting(_ bytes: [UInt8], file: String) throws(PolicyError) {
        var depth = 0
        var line = 1
        var column = 0
        var quote: UInt8? = nil
        var comment = false
        for b in bytes {
            column += 1
            if b == UInt8(ascii: "\n") {
                line += 1
                column = 0
                comment = false
                continue
            }
            if comment { continue }
            if let q = quote {
                if b == q { quote = nil }
                continue
            }
            switch b {
            case UInt8(ascii: "#"): comment = true
            case UInt8(ascii: "'"), UInt8(ascii: "\""): quote = b
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > maximumFlowNesting {
                    throw PolicyError(
                        file: file,
                        line: line,
                        column: column,
                        message: "nesting deeper than \(maximumFlowNesting) levels"
                    )
                }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth = max(0, depth - 1)
            default: break
            }
        }
    }
}
