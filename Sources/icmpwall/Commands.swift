import ArgumentParser
import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallPolicy

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a policy file.",
        discussion: "Prints FILE:LINE:COLUMN: messages for every problem; exit 1 when the policy is invalid.")

    @Argument(help: "The policy file.") var policyFile: String?
    @Option(name: .long, help: "The policy file (instead of the positional argument).") var policy: String?
    @Flag(name: .long, help: "Print the compiled lookup tables' sizes.") var verbose = false

    func validate() throws {
        if policyFile == nil && policy == nil { throw ValidationError("give a policy file: icmpwall check POLICY") }
        if policyFile != nil && policy != nil { throw ValidationError("give the policy once, positionally or with --policy") }
    }

    func run() throws {
        let path = (policyFile ?? policy)!
        let compiled = try loadPolicy(path)
        let p = compiled.policy
        print("\(path): ok: policy \(p.name), \(p.rules.count) rules, default \(p.defaultAction == .drop ? "drop" : "pass"), mode \(p.mode == .monitor ? "monitor" : "enforce"), sha256 \(p.sha256Hex)")
        if verbose {
            print("compiled: \(compiled.decisions.count) decision entries, \(compiled.sourceClasses.count) source prefixes")
        }
    }
}

struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load the datapath, attach it to an interface and pin its state.",
        discussion: """
        Enforcement continues after the command exits; state is pinned under /sys/fs/bpf/icmpwall/IF/. \
        Without --policy the embedded edge-default policy is used. On an interface whose pins outlived its link \
        (it was deleted and created again), attach resumes enforcement from the pins: same policy and counters.
        """)

    @Option(name: .long, help: "The interface to protect.") var interface: String
    @Option(name: .long, help: "The policy file (default: the embedded edge-default).") var policy: String?
    @Option(name: .long, help: "XDP mode: auto (native, else generic), native or generic.") var mode: AttachModeRequest = .auto

    func validate() throws { try validateInterface(interface) }

    func run() throws {
        let compiled = try loadPolicy(policy, enforcing: true)
        try requirePrivileges(for: "attach", mount: !BPFFS.isMounted())
        let dataplane = Dataplane()
        // Pins that outlived their link (the interface went away and came back): enforcement resumes from them,
        // with the policy, counters and buckets they hold; a --policy that differs is applied after.
        if case .linkLost = dataplane.health(interface: interface) {
            try AgentOwnership.refuseIfManaged(interface: interface)
            let gotMode = try dataplane.reattach(interface: interface, mode: mode)
            let running = try dataplane.status(interface: interface).first
            print("re-attached to \(interface) in \(gotMode.rawValue) mode from its pins: policy \(running?.policyName ?? "?") (generation \(running?.generation ?? 0)) continues, counters kept")
            if policy != nil, running?.policySHA256 != compiled.policy.sha256Hex {
                let result = try dataplane.apply(interface: interface, policy: compiled)
                print("applied \(compiled.policy.name) to \(interface): generation \(result.generation)")
            }
            return
        }
        let result = try dataplane.attach(interface: interface, policy: compiled, mode: mode)
        print("attached to \(result.interface) in \(result.mode.rawValue) mode: policy \(compiled.policy.name) (\(compiled.policy.rules.count) rules, generation \(result.install.generation)), pins in \(result.pinDirectory)")
    }
}

extension AttachModeRequest: ExpressibleByArgument {}

struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace the running policy on an interface, atomically.",
        discussion: "A rejected policy leaves the running one untouched; counters survive by rule name.")

    @Option(name: .long, help: "The interface.") var interface: String
    @Argument(help: "The policy file.") var policyFile: String?
    @Option(name: .long, help: "The policy file (instead of the positional argument).") var policy: String?

    func validate() throws {
        try validateInterface(interface)
        if policyFile == nil && policy == nil { throw ValidationError("give a policy file: icmpwall apply --interface IF POLICY") }
        if policyFile != nil && policy != nil { throw ValidationError("give the policy once, positionally or with --policy") }
    }

    func run() throws {
        let compiled = try loadPolicy(policyFile ?? policy, enforcing: true)
        try requirePrivileges(for: "apply")
        let result = try Dataplane().apply(interface: interface, policy: compiled)
        print("applied \(compiled.policy.name) to \(interface): generation \(result.generation), \(compiled.policy.rules.count) rules, \(result.decisionEntries) table entries")
    }
}

struct Detach: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Detach from an interface and remove its pins.")

    @Option(name: .long, help: "The interface.") var interface: String

    func validate() throws { try validateInterface(interface) }

    func run() throws {
        try requirePrivileges(for: "detach")
        try Dataplane().detach(interface: interface)
        print("detached from \(interface)")
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show what is attached where.")

    @Option(name: .long, help: "Only this interface.") var interface: String?
    @Flag(name: .long, help: "JSON output.") var json = false

    func run() throws {
        try requirePrivileges(for: "status")
        let statuses = try Dataplane().status(interface: interface)
        if json {
            print(jsonLine(["attachments": statuses]))
            return
        }
        if statuses.isEmpty {
            print("icmpwall is not attached to any interface")
            return
        }
        let formatter = ISO8601DateFormatter()
        for s in statuses {
            let abi = Int(s.abiVersion) == IcmpwallVersion.abi ? "" : " [pins of datapath ABI \(s.abiVersion), left by another icmpwall version]"
            print("\(s.interface): \(s.enforcing ? "enforcing" : "NOT ENFORCING (link lost)") in \(s.mode) mode, program id \(s.programID.map(String.init) ?? "-"), link id \(s.linkID.map(String.init) ?? "-")\(abi)")
            print("  policy \(s.policyName) sha256 \(s.policySHA256.prefix(16))…, \(s.ruleCount) rules, generation \(s.generation)")
            print("  egress error limiter: \(s.egressProgramID.map { "tc clsact egress filter, program id \($0)" } ?? "NOT ATTACHED")")
            print("  attached \(s.attachedAt.map { formatter.string(from: $0) } ?? "-"), applied \(s.appliedAt.map { formatter.string(from: $0) } ?? "-"), pins \(s.pinDirectory)")
        }
    }
}
