import Testing
import VigilPolicy

@Suite("processes: in collection.yaml")
struct ProcessSettingsTests {
    @Test("parses with defaults, can be turned off, and mistakes are located")
    func processes() throws {
        #expect(try CollectionSettings.parse(yaml: "files:\n  watch: []\n", file: "c.yaml").processes == nil)
        let defaults = try #require(try CollectionSettings.parse(yaml: "processes: {}\n", file: "c.yaml").processes)
        #expect(defaults == CollectionSettings.Processes())
        #expect(defaults.maxProcesses == 32_768 && defaults.fanotify && defaults.report.contains("exec"))
        let s = try #require(
            try CollectionSettings.parse(
                yaml: "processes:\n  max_processes: 100\n  report: [exec, exit]\n  fanotify: false\n",
                file: "c.yaml"
            ).processes
        )
        #expect(s.maxProcesses == 100 && s.report == ["exec", "exit"] && !s.fanotify)
        #expect(defaults.readerNice == -10)
        #expect(
            try CollectionSettings.parse(yaml: "processes:\n  reader_nice: 5\n", file: "c.yaml").processes?.readerNice
                == 5
        )
        #expect(
            try CollectionSettings.parse(yaml: "processes:\n  reader_nice: inherit\n", file: "c.yaml").processes?
                .readerNice == nil
        )
        #expect { try CollectionSettings.parse(yaml: "processes:\n  reader_nice: -30\n", file: "c.yaml") } throws: {
            "\($0)".hasPrefix("c.yaml:2:16: processes.reader_nice must be between -20")
        }
        #expect(try CollectionSettings.parse(yaml: "processes:\n  enabled: false\n", file: "c.yaml").processes == nil)
        #expect {
            try CollectionSettings.parse(yaml: "processes:\n  report: [exec, spawn]\n", file: "c.yaml")
        } throws: {
            "\($0)".hasPrefix("c.yaml:2:18: processes.report: unknown action 'spawn'")
        }
        #expect { try CollectionSettings.parse(yaml: "processes:\n  max_processes: 1\n", file: "c.yaml") } throws: {
            "\($0)".hasPrefix("c.yaml:2:18: processes.max_processes must be between 16")
        }
        #expect { try CollectionSettings.parse(yaml: "processes:\n  enabled: maybe\n", file: "c.yaml") } throws: {
            "\($0)" == "c.yaml:2:12: processes.enabled must be true or false"
        }
    }

    @Test("the shipped collection.yaml turns the process sensor on")
    func shipped() throws {
        let root = #filePath.components(separatedBy: "/Tests/")[0]
        let s = try CollectionSettings.load(policiesDirectory: root + "/Policies")
        #expect(s.processes == CollectionSettings.Processes())
    }
}
