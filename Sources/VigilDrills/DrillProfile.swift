import Foundation

/// The policy the selftest's own agent runs: every rule of `POLICIES/rules/`, except that a
/// rule with a drill copy in `POLICIES/drills/NAME.yml.in` is replaced by that copy, rendered
/// with `${DRILL_ROOT}` set to the scratch root; plus collection settings that watch the
/// scratch area, follow processes and capture packets.
///
/// A drill copy is the real rule, byte for byte, except that the paths a safe drill must not
/// touch (`/etc/cron.d/`, `/etc/sudoers.d/`, ...) carry the `${DRILL_ROOT}` prefix; it keeps
/// the real rule's id, so an alert from the drill names the rule that would fire in
/// production. The `.yml.in` suffix keeps the templates out of any policy directory walk.
public enum DrillProfile {
    public static let placeholder = "${DRILL_ROOT}"
    public static let templateSuffix = ".yml.in"

    /// The drill templates of a policies directory: (template path, the real rule it copies).
    public static func templates(policies: String) -> [(template: String, rule: String)] {
        let drills = policies + "/drills"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: drills)) ?? []
        return names.filter { $0.hasSuffix(templateSuffix) }.sorted().map {
            (drills + "/" + $0, policies + "/rules/" + String($0.dropLast(".in".count)))
        }
    }

    /// Renders a template: `${DRILL_ROOT}` replaced by `root`. With `root` empty the result
    /// is the real rule.
    public static func render(_ template: String, root: String) -> String {
        template.replacingOccurrences(of: placeholder, with: root)
    }

    /// Writes the profile into `directory` (`rules/` and `collection.yaml`).
    public static func write(
        policies: String,
        scratch: ScratchArea,
        into directory: String
    ) throws {
        let rules = policies + "/rules"
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: rules, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DrillError("\(rules): no rules directory (pass --policies DIR, the directory holding rules/)")
        }
        let out = directory + "/rules"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let replaced = Dictionary(
            templates(policies: policies).map { ($0.rule, $0.template) },
            uniquingKeysWith: { first, _ in first }
        )
        for (rule, template) in replaced where !FileManager.default.fileExists(atPath: rule) {
            throw DrillError("\(template): copies \(rule), which does not exist")
        }
        guard let walker = FileManager.default.enumerator(atPath: rules) else {
            throw DrillError("\(rules): cannot read")
        }
        while let relative = walker.nextObject() as? String {
            guard relative.hasSuffix(".yml") || relative.hasSuffix(".yaml") else { continue }
            let source = rules + "/" + relative
            let target = out + "/" + relative
            try FileManager.default.createDirectory(
                atPath: (target as NSString).deletingLastPathComponent,
                withIntermediateDirectories: true
            )
            if let template = replaced[source] {
                let text = try String(contentsOfFile: template, encoding: .utf8)
                try render(text, root: scratch.root).write(toFile: target, atomically: true, encoding: .utf8)
            } else {
                try FileManager.default.copyItem(atPath: source, toPath: target)
            }
        }
        try collection(scratch: scratch).write(
            toFile: directory + "/collection.yaml",
            atomically: true,
            encoding: .utf8
        )
    }

    /// Collection settings for the selftest's agent: the scratch area only (so the drills are
    /// all it sees of the file system), every exec, packet metadata on all interfaces, and a
    /// budget it cannot hit during a short run.
    static func collection(scratch: ScratchArea) -> String {
        """
        # Written by vigilctl selftest: the scratch area of this run only.
        files:
          watch:
            - \(scratch.root)
            - \(scratch.sharedMemoryRoot)
          hash_max_bytes: 1048576
        processes:
          enabled: true
          max_processes: 32768
          report: [exec]
          fanotify: true
        network:
          interface: any
          snap_length: 128
          max_flows: 65536
          idle_timeout_s: 10
        budget:
          cpu_percent: 400
          memory_mb: 4096
        """
    }
}
