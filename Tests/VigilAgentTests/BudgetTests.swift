import Foundation
import Testing
import VigilAgent
import VigilCore
import VigilLinux
import VigilPolicy

@Suite("Self-watchdog: shed ladder, sampler, governor")
struct BudgetTests {
    typealias Level = ShedLadder.Level
    let mib: UInt64 = 1 << 20

    func sample(cpu: Double, rssMiB: UInt64) -> ShedLadder.Sample {
        ShedLadder.Sample(cpuPercent: cpu, residentBytes: rssMiB << 20)
    }

    @Test("over budget, the ladder climbs one rung per sample in order and stops at alerts only")
    func climbsInOrder() {
        var ladder = ShedLadder(cpuPercentBudget: 10, residentBytesBudget: 64 * mib)
        var seen: [Level] = []
        for _ in 0..<10 {
            if let t = ladder.observe(sample(cpu: 50, rssMiB: 20)) {
                #expect(t.to.rawValue == t.from.rawValue + 1)
                #expect(t.reason == "cpu")
                seen.append(t.to)
            }
        }
        #expect(seen == [.sampleRaw, .pauseHashing, .reduceCapture, .pauseLowPrioritySensor, .alertsOnly])
        #expect(ladder.level == .alertsOnly)
        #expect(ladder.stepsUp == 5)
        #expect(ladder.observe(sample(cpu: 50, rssMiB: 100)) == nil, "no rung above alerts only")
    }

    @Test("memory over the cap also climbs, with the reason named")
    func memory() {
        var ladder = ShedLadder(cpuPercentBudget: 10, residentBytesBudget: 64 * mib)
        #expect(ladder.observe(sample(cpu: 1, rssMiB: 65))?.reason == "memory")
        #expect(ladder.observe(sample(cpu: 11, rssMiB: 65))?.reason == "cpu,memory")
    }

    @Test("hysteresis: it steps down only after consecutive samples comfortably under both budgets")
    func hysteresis() {
        var ladder = ShedLadder(cpuPercentBudget: 10, residentBytesBudget: 100 * mib)
        _ = ladder.observe(sample(cpu: 20, rssMiB: 10))
        _ = ladder.observe(sample(cpu: 20, rssMiB: 10))
        #expect(ladder.level == .pauseHashing)
        // Under budget but above 70% of it: holds.
        for _ in 0..<20 { #expect(ladder.observe(sample(cpu: 9, rssMiB: 10)) == nil) }
        // Comfortable CPU but memory above 90% of the cap: holds.
        for _ in 0..<20 { #expect(ladder.observe(sample(cpu: 1, rssMiB: 95)) == nil) }
        // Four comfortable samples, then an over-budget one: the streak restarts.
        for _ in 0..<4 { #expect(ladder.observe(sample(cpu: 1, rssMiB: 10)) == nil) }
        #expect(ladder.observe(sample(cpu: 30, rssMiB: 10))?.to == .reduceCapture)
        var downs: [Level] = []
        for _ in 0..<15 {
            if let t = ladder.observe(sample(cpu: 1, rssMiB: 10)) {
                #expect(t.reason == "recovered")
                downs.append(t.to)
            }
        }
        #expect(downs == [.pauseHashing, .sampleRaw, .full])
        #expect(ladder.stepsDown == 3)
        #expect(ladder.observe(sample(cpu: 1, rssMiB: 10)) == nil)
    }

    @Test("what each rung sheds")
    func rungs() {
        #expect(!Level.full.samplesRawEvents && !Level.full.pausesHashing)
        #expect(Level.sampleRaw.samplesRawEvents && !Level.sampleRaw.pausesHashing)
        #expect(Level.pauseHashing.pausesHashing && !Level.pauseHashing.reducesCapture)
        #expect(Level.reduceCapture.reducesCapture && !Level.reduceCapture.pausesLowPrioritySensor)
        #expect(Level.pauseLowPrioritySensor.pausesLowPrioritySensor && !Level.pauseLowPrioritySensor.dropsRawEvents)
        #expect(Level.alertsOnly.dropsRawEvents && !Level.alertsOnly.samplesRawEvents && Level.alertsOnly.pausesHashing)
    }

    @Test("the sampler averages CPU over its window")
    func sampler() {
        var s = ResourceSampler(window: .seconds(10))
        #expect(s.record(ProcessUsage(cpuNanoseconds: 0, residentBytes: 1), at: .seconds(0)) == nil)
        // Half a core for 2 s.
        let a = s.record(ProcessUsage(cpuNanoseconds: 1_000_000_000, residentBytes: 5), at: .seconds(2))
        #expect(a?.cpuPercent == 50)
        #expect(a?.residentBytes == 5)
        // Idle for the next 18 s: the window (10 s) forgets the busy start.
        for t in 3...20 {
            _ = s.record(ProcessUsage(cpuNanoseconds: 1_000_000_000, residentBytes: 5), at: .seconds(t))
        }
        let b = s.record(ProcessUsage(cpuNanoseconds: 1_100_000_000, residentBytes: 5), at: .seconds(21))
        #expect(b != nil && b!.cpuPercent < 2 && b!.cpuPercent > 0.5)
    }

    @Test("/proc/self/stat and statm are parsed, odd command names included")
    func procParsing() throws {
        let line = Array("1234 (a) b (c d) S 1 1 1 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 1 2 3\n".utf8)
        #expect(ProcessUsage.parseCPUTicks(stat: line) == 325)
        #expect(ProcessUsage.parseCPUTicks(stat: Array("garbage".utf8)) == nil)
        #expect(ProcessUsage.parseCPUTicks(stat: Array("1 (x) S 1 2".utf8)) == nil)
        #expect(ProcessUsage.parseResidentPages(statm: Array("5000 1200 300 1 0 900 0\n".utf8)) == 1200)
        #expect(ProcessUsage.parseResidentPages(statm: Array("5000 -1".utf8)) == nil)
        // The real file of this process.
        let usage = try #require(ProcessUsage.current())
        #expect(usage.residentBytes > 1 << 20)
        var later = usage
        var spins = 0
        var sink: UInt64 = 0
        while later.cpuNanoseconds == usage.cpuNanoseconds, spins < 5_000 {
            for i in 0..<200_000 { sink &+= UInt64(i) &* 2_654_435_761 }
            later = try #require(ProcessUsage.current())
            spins += 1
        }
        #expect(later.cpuNanoseconds > usage.cpuNanoseconds, "CPU time did not advance while spinning (\(sink))")
    }

    func fileEvent() -> Event {
        Event(payload: .file(FileEvent(action: .create, targetFilename: "/tmp/x")))
    }

    @Test("the governor samples 1 in N raw events while sampling, drops them at alerts only, keeps health, and counts")
    func governor() throws {
        let budget = CollectionSettings.Budget(
            cpuPercent: 10,
            windowSeconds: 10,
            memoryMegabytes: 1024,
            sampleIntervalMilliseconds: 100
        )
        let g = BudgetGovernor(budget: budget, sampleEvery: 10)
        #expect((0..<100).allSatisfy { _ in g.keepRaw(fileEvent()) }, "full collection keeps everything")
        #expect(g.shedReport(hashesShedTotal: 0) == nil)
        // 100% of a core for a second: over the 10% budget.
        _ = g.observe(ProcessUsage(cpuNanoseconds: 0, residentBytes: 1 << 20), at: .seconds(0))
        let t = try #require(
            g.observe(ProcessUsage(cpuNanoseconds: 1_000_000_000, residentBytes: 1 << 20), at: .seconds(1))
        )
        #expect(t.to == .sampleRaw)
        #expect(g.level == .sampleRaw)
        let kept = (0..<1000).filter { _ in g.keepRaw(fileEvent()) }.count
        #expect(kept == 100)
        #expect(g.keepRaw(Event(payload: .health(AgentHealth(kind: "x", message: "y")))))
        #expect(g.shedTotals["file"] == 900)
        let report = try #require(g.shedReport(hashesShedTotal: 7))
        guard case .health(let h) = report.payload else {
            Issue.record("not health")
            return
        }
        #expect(h.kind == "shed")
        #expect(h.counters["file_shed"] == 900 && h.counters["file_shed_total"] == 900)
        #expect(h.counters["hashes_shed"] == 7)
        #expect(h.counters["level"] == UInt64(Level.sampleRaw.rawValue))
        #expect(g.shedReport(hashesShedTotal: 7) == nil, "nothing new since the last report")
        guard case .health(let level) = g.transitionEvent(t).payload else {
            Issue.record("not health")
            return
        }
        #expect(level.kind == "budget_level")
        #expect(level.counters["level"] == 1 && level.counters["cpu_permille"] == 1000)
        // Up to alerts only: every raw event is shed.
        for second in 2...5 {
            _ = g.observe(
                ProcessUsage(cpuNanoseconds: UInt64(second) * 1_000_000_000, residentBytes: 1 << 20),
                at: .seconds(second)
            )
        }
        #expect(g.level == .alertsOnly)
        #expect(!(0..<50).contains { _ in g.keepRaw(fileEvent()) })
        #expect(g.shedTotals["file"] == 950)
    }

    @Test("budget: in collection.yaml parses, with defaults, and mistakes are located")
    func settings() throws {
        let s = try CollectionSettings.parse(yaml: "budget:\n  cpu_percent: 5\n  memory_mb: 48\n", file: "c.yaml")
        #expect(
            s.budget
                == CollectionSettings.Budget(
                    cpuPercent: 5,
                    windowSeconds: 10,
                    memoryMegabytes: 48,
                    sampleIntervalMilliseconds: 1000
                )
        )
        #expect(
            try CollectionSettings.parse(yaml: "files:\n  watch: []\n", file: "c.yaml").budget
                == CollectionSettings.Budget()
        )
        #expect(throws: PolicyError.self) {
            try CollectionSettings.parse(yaml: "budget:\n  cpu_percent: 0\n", file: "c.yaml")
        }
        do {
            _ = try CollectionSettings.parse(yaml: "files:\n  watch: []\nbudget:\n  memory: 5\n", file: "c.yaml")
            Issue.record("unknown key accepted")
        } catch {
            #expect("\(error)".contains("c.yaml:4:"), "\(error)")
        }
        // The shipped default policy parses and carries the documented budget.
        let repo = #filePath.components(separatedBy: "/Tests/")[0]
        let shipped = try CollectionSettings.load(path: repo + "/Policies/collection.yaml")
        #expect(shipped.budget == CollectionSettings.Budget())
    }

    @Test("sandbox: in the agent configuration parses and refuses unknown actions")
    func sandboxConfig() throws {
        let base = "collector:\n  url: http://x\nstate_dir: s\npolicies_dir: p\n"
        #expect(
            try AgentConfiguration.parse(yaml: base, file: "a.yaml").sandbox
                == .init(enabled: true, defaultAction: "eperm")
        )
        let c = try AgentConfiguration.parse(
            yaml: base + "sandbox:\n  enabled: false\n  default_action: kill\n",
            file: "a.yaml"
        )
        #expect(c.sandbox == .init(enabled: false, defaultAction: "kill"))
        do {
            _ = try AgentConfiguration.parse(yaml: base + "sandbox:\n  default_action: trap\n", file: "a.yaml")
            Issue.record("bad action accepted")
        } catch {
            #expect("\(error)".contains("a.yaml:6:"), "\(error)")
        }
    }
}
