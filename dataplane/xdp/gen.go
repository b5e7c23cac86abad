package xdp

// The BPF objects are compiled by bpf2go from bpf/*.c; the generated
// *_bpfel.go and *_bpfel.o are committed so that building lbd needs no
// clang. After changing the C, run `go generate ./dataplane/xdp` (needs
// clang-14, llvm-strip-14 and libbpf-dev) and commit the result; CI checks
// that regenerating gives no diff. -mcpu=v3 for the atomic
// compare-and-exchange of the RTT minimum (kernels >= 5.12).

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target bpfel -type vip_key -type vip_meta -type vip_addr_key -type backend -type flow_key -type flow_state -type rtt_key -type rtt_val -type vip_counters -type real_counters lb bpf/lb.c
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target bpfel -type local_key decap bpf/decap.c
