/* The floor: read every packet of a capture with pcap_next_ex and do nothing else. */
#include <pcap/pcap.h>
#include <stdio.h>

int main(int argc, char **argv) {
    char errbuf[PCAP_ERRBUF_SIZE];
    if (argc != 2) { fprintf(stderr, "usage: readloop FILE\n"); return 2; }
    pcap_t *p = pcap_open_offline(argv[1], errbuf);
    if (!p) { fprintf(stderr, "%s\n", errbuf); return 1; }
    struct pcap_pkthdr *h;
    const u_char *data;
    unsigned long packets = 0, bytes = 0;
    int rc;
    while ((rc = pcap_next_ex(p, &h, &data)) == 1) {
        packets++;
        bytes += h->caplen + data[0];
    }
    if (rc == -1) { fprintf(stderr, "%s\n", pcap_geterr(p)); return 1; }
    printf("%lu packets %lu bytes\n", packets, bytes);
    pcap_close(p);
    return 0;
}
