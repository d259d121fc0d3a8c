import ArgumentParser
import VigilCore

@main
struct Vigilctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigilctl",
        abstract: "Operate Vigil: agent keys, event queries, collector inventory, policy checks, self-test.",
        version: VigilVersion.string,
        subcommands: [
            EventsCommand.self, TailCommand.self, AlertsCommand.self, ExportCommand.self, AgentsCommand.self,
            TokensCommand.self,
            KeygenCommand.self, TLSPinCommand.self, VerifyCommand.self,
            FlowsCommand.self,
            PolicyCommand.self, SelftestCommand.self,
        ]
    )
}
