import Foundation
import PackagePlugin

/// Compiles every `bpf/*.bpf.c` with clang's BPF target and embeds the objects in the target as Swift
/// source (hex strings), so the `icmpwall` binary carries its datapath and a copied binary still works.
/// Only the generated Swift file is declared as output: declaring the `.o` files would make them resources.
@main
struct EmbedBPF: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let packageDir = context.package.directoryURL
        let bpfDir = packageDir.appending(path: "bpf")
        let fm = FileManager.default
        let names = try fm.contentsOfDirectory(atPath: bpfDir.path).sorted()
        let sources = names.filter { $0.hasSuffix(".bpf.c") }.map { bpfDir.appending(path: $0) }
        let headers = names.filter { $0.hasSuffix(".h") }.map { bpfDir.appending(path: $0) }
        let includeDir = bpfDir.appending(path: "include")
        let abiHeaders = (try? fm.contentsOfDirectory(atPath: includeDir.path))?
            .filter { $0.hasSuffix(".h") }.map { includeDir.appending(path: $0) } ?? []
        let clang = try context.tool(named: "clang").url
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedBPFObjects.swift")
        let script = bpfDir.appending(path: "embed.sh")
        return [
            .buildCommand(
                displayName: "Compiling BPF objects for \(target.name)",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: [script.path, clang.path, output.path, context.pluginWorkDirectoryURL.path]
                    + sources.map(\.path),
                inputFiles: [script] + sources + headers + abiHeaders,
                outputFiles: [output]
            )
        ]
    }
}
