#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

import CLibBPF

/// Reads variable layouts from the object's BTF as libbpf finalised it at open (DATASEC sizes
/// and variable offsets fixed up from the ELF symbols).
enum BTFAccess {
    struct Functions {
        func findByNameKind(_ btf: OpaquePointer, _ name: String, _ kind: UInt32) -> Int32 {
            btf__find_by_name_kind(btf, name, kind)
        }
        func typeByID(_ btf: OpaquePointer, _ id: UInt32) -> UnsafeRawPointer? {
            btf__type_by_id(btf, id).map { UnsafeRawPointer($0) }
        }
        func nameByOffset(_ btf: OpaquePointer, _ offset: UInt32) -> UnsafePointer<CChar>? {
            btf__name_by_offset(btf, offset)
        }
    }

    static let functions: Functions? = Functions()

    static let kindVar: UInt32 = 14
    static let kindDatasec: UInt32 = 15

    /// Offset and size of `variable` in the DATASEC named `section`, or nil.
    static func variable(_ variable: String, inDatasec section: String, btf: OpaquePointer) -> (offset: Int, size: Int)? {
        guard let fns = functions else { return nil }
        let id = fns.findByNameKind(btf, section, kindDatasec)
        guard id > 0, let datasec = fns.typeByID(btf, UInt32(id)) else { return nil }
        // struct btf_type { u32 name_off; u32 info; u32 size; } then vlen x btf_var_secinfo { u32 type, offset, size; }
        let info = datasec.load(fromByteOffset: 4, as: UInt32.self)
        let vlen = Int(info & 0xffff)
        for i in 0..<vlen {
            let base = 12 + i * 12
            let typeID = datasec.load(fromByteOffset: base, as: UInt32.self)
            let offset = datasec.load(fromByteOffset: base + 4, as: UInt32.self)
            let size = datasec.load(fromByteOffset: base + 8, as: UInt32.self)
            guard let v = fns.typeByID(btf, typeID) else { continue }
            let vinfo = v.load(fromByteOffset: 4, as: UInt32.self)
            guard (vinfo >> 24) & 0x1f == kindVar else { continue }
            let nameOff = v.load(fromByteOffset: 0, as: UInt32.self)
            guard let cname = fns.nameByOffset(btf, nameOff), String(cString: cname) == variable else { continue }
            return (Int(offset), Int(size))
        }
        return nil
    }
}

/// A minimal ELF64 little-endian reader: the symbol of a global variable in a data section.
/// Used when an object carries no BTF (built without `-g`).
enum ELFSymbols {
    static func variable(_ variable: String, inSection section: String, elf: [UInt8]) -> (offset: Int, size: Int)? {
        elf.withUnsafeBytes { raw -> (offset: Int, size: Int)? in
            func u16(_ o: Int) -> Int? { o >= 0 && o + 2 <= raw.count ? Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt16.self))) : nil }
            func u32(_ o: Int) -> Int? { o >= 0 && o + 4 <= raw.count ? Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt32.self))) : nil }
            func u64(_ o: Int) -> Int? {
                guard o >= 0, o + 8 <= raw.count else { return nil }
                let v = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt64.self))
                return v <= UInt64(Int.max) ? Int(v) : nil
            }
            func cString(_ o: Int) -> String? {
                guard o >= 0, o < raw.count else { return nil }
                var end = o
                while end < raw.count && raw[end] != 0 { end += 1 }
                return String(decoding: raw[o..<end], as: UTF8.self)
            }
            // ELF magic, 64-bit, little-endian.
            guard raw.count >= 64, raw[0] == 0x7f, raw[1] == 0x45, raw[2] == 0x4c, raw[3] == 0x46,
                  raw[4] == 2, raw[5] == 1 else { return nil }
            guard let shoff = u64(0x28), let shentsize = u16(0x3a), let shnum = u16(0x3c), let shstrndx = u16(0x3e),
                  shentsize >= 64 else { return nil }
            struct Section { var name: Int; var type: Int; var offset: Int; var size: Int; var link: Int; var entsize: Int }
            var sections: [Section] = []
            for i in 0..<shnum {
                let b = shoff + i * shentsize
                guard let name = u32(b), let type = u32(b + 4), let off = u64(b + 24), let size = u64(b + 32),
                      let link = u32(b + 40), let entsize = u64(b + 56) else { return nil }
                sections.append(Section(name: name, type: type, offset: off, size: size, link: link, entsize: entsize))
            }
            guard shstrndx < sections.count else { return nil }
            let shstr = sections[shstrndx].offset
            guard let target = sections.indices.first(where: { cString(shstr + sections[$0].name) == section }) else { return nil }
            for symtab in sections where symtab.type == 2 /* SHT_SYMTAB */ && symtab.entsize >= 24 && symtab.link < sections.count {
                let strtab = sections[symtab.link].offset
                for j in 0..<(symtab.size / symtab.entsize) {
                    let s = symtab.offset + j * symtab.entsize
                    guard let nameOff = u32(s), let shndx = u16(s + 6), let value = u64(s + 8), let size = u64(s + 16),
                          s + 4 < raw.count else { continue }
                    let symType = raw[s + 4] & 0xf
                    guard shndx == target, symType == 1 /* STT_OBJECT */, cString(strtab + nameOff) == variable else { continue }
                    return (value, size)
                }
            }
            return nil
        }
    }
}
