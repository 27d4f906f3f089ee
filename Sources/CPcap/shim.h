/* libpcap for Swift. pcap/bpf.h declares classic BPF's struct bpf_insn, which collides with
 * linux/bpf.h's (imported by the BPF layer) when one Swift module sees both. Capture reading needs
 * neither, so the classic-BPF header is kept out and the two types pcap.h uses from it are declared. */
#define lib_pcap_bpf_h
typedef unsigned int bpf_u_int32;
typedef int bpf_int32;
struct bpf_program;
struct bpf_insn;
#include <pcap/dlt.h>
#include <pcap/pcap.h>
