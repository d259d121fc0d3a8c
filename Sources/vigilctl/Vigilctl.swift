import ArgumentParser

@main
struct Vigilctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigilctl",
        abstract: "Operate Vigil: agent keys, event queries, collector inventory.",
        subcommands: [
            EventsCommand.self, AgentsCommand.self, KeygenCommand.self, VerifyCommand.self, FlowsCommand.self,
            PolicyCommand.self,
        ]
    )
}
