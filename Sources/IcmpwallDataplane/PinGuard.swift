import BPFKit
import CIcmpwallShim
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Open descriptors of an attachment's XDP link and pinned maps.
///
/// A pinned link with no open descriptor is released (and the program detached) when its pin is removed; a process
/// that holds this keeps the link and the maps alive whatever happens to the pins, and ``Dataplane/restorePins(_:)``
/// pins them again. The agent holds one per interface it enforces.
public final class HeldAttachment: @unchecked Sendable {
    public let interface: String
    public let link: BPFLink
    /// The link's id when it was opened: a pin that names another link belongs to someone else.
    public let linkID: UInt32
    let maps: [(name: String, map: BPFMap)]

    init(interface: String, link: BPFLink, linkID: UInt32, maps: [(name: String, map: BPFMap)]) {
        self.interface = interface
        self.link = link
        self.linkID = linkID
        self.maps = maps
    }

    /// The interface index the link carries the program on (0 once the interface is gone or the link was detached).
    public var interfaceIndex: Int32 { (try? link.info().interfaceIndex ?? 0) ?? 0 }

    /// The link's current program id.
    public var programID: UInt32 { (try? link.info().programID) ?? 0 }
}

extension Dataplane {
    /// Opens the pinned link and every pinned map of `interface`, to hold them (see ``HeldAttachment``).
    public func hold(interface: String) throws(DataplaneError) -> HeldAttachment {
        let link = try bpf { () throws(BPFError) in try BPFLink.openPinned(linkPin(interface)) }
        let info = try bpf { () throws(BPFError) in try link.info() }
        var maps: [(String, BPFMap)] = []
        for name in DatapathNames.pinnedMaps {
            maps.append((name, try bpf { () throws(BPFError) in try BPFMap.openPinned("\(mapsDirectory(interface))/\(name)") }))
        }
        return HeldAttachment(interface: interface, link: link, linkID: info.id, maps: maps)
    }

    /// The pins of a held attachment that are missing (paths), link last.
    public func missingPins(_ held: HeldAttachment) -> [String] {
        var missing = held.maps.map { "\(mapsDirectory(held.interface))/\($0.name)" }.filter { !BPFFS.exists($0) }
        if !BPFFS.exists(linkPin(held.interface)) { missing.append(linkPin(held.interface)) }
        return missing
    }

    /// True when the link pin of `interface` exists and names another link than `held` (someone attached anew).
    public func pinnedLinkDiffers(_ held: HeldAttachment) -> Bool {
        guard let pinned = try? BPFLink.openPinned(linkPin(held.interface)), let info = try? pinned.info() else { return false }
        return info.id != held.linkID
    }

    /// Pins again whatever of a held attachment was removed (maps first, the link last, as attach does: a link pin
    /// means a complete set), with the private modes of ``securePins(interface:)``. Returns the paths pinned again.
    @discardableResult
    public func restorePins(_ held: HeldAttachment) throws(DataplaneError) -> [String] {
        let missing = missingPins(held)
        guard !missing.isEmpty else { return [] }
        try bpf { () throws(BPFError) in try BPFFS.makeDirectory(mapsDirectory(held.interface)) }
        for (name, map) in held.maps {
            let path = "\(mapsDirectory(held.interface))/\(name)"
            guard missing.contains(path) else { continue }
            do { try map.pin(at: path) } catch where error.errno == EEXIST {}  // pinned meanwhile by another restorer
            catch { throw .bpf(error) }
        }
        if missing.contains(linkPin(held.interface)) {
            do { try held.link.pin(at: linkPin(held.interface)) } catch where error.errno == EEXIST {}
            catch { throw .bpf(error) }
        }
        _ = securePins(interface: held.interface)
        return missing
    }

    /// Makes icmpwall's pins private to root: the pin root and the interface's folders 0700, every pin 0600 (a pin
    /// readable by others would let any user open the maps). Looser modes found (an older version's pins, a hand-made
    /// folder) are tightened; returns the paths it changed. Pins are created with these modes in the first place.
    @discardableResult
    public func securePins(interface: String) -> [String] {
        var changed: [String] = []
        func tighten(_ path: String, directory: Bool) {
            var st = stat()
            guard lstat(path, &st) == 0 else { return }
            let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
            guard isDirectory == directory else { return }
            let want: mode_t = directory ? 0o700 : 0o600
            if st.st_mode & 0o7777 != want, chmod(path, want) == 0 { changed.append(path) }
        }
        tighten(pinRoot, directory: true)
        tighten(pinDirectory(interface), directory: true)
        tighten(mapsDirectory(interface), directory: true)
        tighten(linkPin(interface), directory: false)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: mapsDirectory(interface))) ?? []
        for name in names { tighten("\(mapsDirectory(interface))/\(name)", directory: false) }
        return changed
    }
}
