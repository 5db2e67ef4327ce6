/*
 * A closed-loop HTTP/1.1 load generator for bench/fleet.sh: C connections,
 * each a thread that sends one POST and reads its whole answer before the
 * next (keep-alive), over TCP, a unix socket, or TLS with a client
 * certificate; wrk has neither unix sockets nor client certificates.
 *
 *   load [-U PATH | -H HOST -p PORT] [-t CA CERT KEY] -c CONNS -d SECONDS
 *        -w WARMUP_SECONDS -P PATH -b BODY [-x 'NAME: VALUE']
 *
 * Prints "requests N non200 N errors N rps X p50_ms X p99_ms X" for the
 * requests that began after the warm-up.  A response is read by its
 * Content-Length (the module's non-streamed answers have one).
 */
#define _GNU_SOURCE             /* strcasestr */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static const char  *unix_path, *host = "127.0.0.1", *path = "/";
static const char  *body = "";
static const char  *extra = "";            /* -x: a header line */
static int          port = 80, conns = 64;
static double       duration = 10, warmup = 2;
static SSL_CTX     *ctx;
static char         request[8192];
static size_t       request_len;
static double       t_start;

typedef struct {
    pthread_t   tid;
    double     *lat;
    size_t      n, cap;
    long        non200, errors;
} worker_t;

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct {
    int   fd;
    SSL  *ssl;
} conn_t;

static void
conn_close(conn_t *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static int
conn_open(conn_t *c)
{
    int one = 1;

    c->ssl = NULL;
    if (unix_path != NULL) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", unix_path);
        c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (c->fd < 0
            || connect(c->fd, (struct sockaddr *) &sa, sizeof(sa)) != 0)
        {
            goto fail;
        }
    } else {
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons(port) };

        inet_pton(AF_INET, host, &sa.sin_addr);
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0
            || connect(c->fd, (struct sockaddr *) &sa, sizeof(sa)) != 0)
        {
            goto fail;
        }
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (ctx != NULL) {
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, "localhost");
        if (SSL_connect(c->ssl) != 1) {
            goto fail;
        }
    }
    return 0;

fail:
    conn_close(c);
    return -1;
}

static ssize_t
conn_write(conn_t *c, const char *p, size_t n)
{
    return c->ssl ? SSL_write(c->ssl, p, (int) n) : write(c->fd, p, n);
}

static ssize_t
conn_read(conn_t *c, char *p, size_t n)
{
    return c->ssl ? SSL_read(c->ssl, p, (int) n) : read(c->fd, p, n);
}

/* One request and its answer: the status, or -1 when the connection
 * failed. */
static int
exchange(conn_t *c)
{
    char     buf[65536], *hdr_end, *cl;
    size_t   have = 0, want;
    ssize_t  n;
    int      status;

    if (conn_write(c, request, request_len) != (ssize_t) request_len) {
        return -1;
    }
    for (;;) {
        n = conn_read(c, buf + have, sizeof(buf) - 1 - have);
        if (n <= 0) {
            return -1;
        }
        have += n;
        buf[have] = '\0';
        hdr_end = strstr(buf, "\r\n\r\n");
        if (hdr_end != NULL) {
            break;
        }
        if (have == sizeof(buf) - 1) {
            return -1;
        }
    }
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        return -1;
    }
    *hdr_end = '\0';
    cl = strcasestr(buf, "\r\ncontent-length:");
    if (cl == NULL) {
        return -1;
    }
    want = (hdr_end + 4 - buf) + strtoul(cl + 17, NULL, 10);
    while (have < want) {
        n = conn_read(c, buf, want - have < sizeof(buf) ? want - have
                                                       : sizeof(buf));
        if (n <= 0) {
            return -1;
        }
        have += n;
    }
    return status;
}

static void *
run(void *arg)
{
    worker_t  *w = arg;
    conn_t     c = { -1, NULL };
    double     t0, t1, end = t_start + warmup + duration;
    int        status;

    while ((t0 = now()) < end) {
        if (c.fd < 0 && conn_open(&c) != 0) {
            w->errors++;
            usleep(10000);
            continue;
        }
        status = exchange(&c);
        t1 = now();
        if (status < 0) {
            conn_close(&c);
        }
        if (t0 < t_start + warmup) {
            continue;
        }
        if (status < 0) {
            w->errors++;
            continue;
        }
        if (status != 200) {
            w->non200++;
        }
        if (w->n == w->cap) {
            w->cap = w->cap ? 2 * w->cap : 4096;
            w->lat = realloc(w->lat, w->cap * sizeof(double));
            if (w->lat == NULL) {
                abort();
            }
        }
        w->lat[w->n++] = t1 - t0;
    }
    conn_close(&c);
    return NULL;
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
    int        i, opt;
    size_t     n = 0, k;
    long       non200 = 0, errors = 0;
    double    *all;
    worker_t  *w;
    const char *ca = NULL, *cert = NULL, *key = NULL;

    while ((opt = getopt(argc, argv, "U:H:p:t:c:d:w:P:b:x:")) != -1) {
        switch (opt) {
        case 'U': unix_path = optarg; break;
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 't':
            if (optind + 1 >= argc) {
                return 2;
            }
            ca = optarg;
            cert = argv[optind++];
            key = argv[optind++];
            break;
        case 'c': conns = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'P': path = optarg; break;
        case 'b': body = optarg; break;
        case 'x': extra = optarg; break;
        default:
            fprintf(stderr, "usage: see bench/fleet/load.c\n");
            return 2;
        }
    }
    if (ca != NULL) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1
            || SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1
            || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        {
            ERR_print_errors_fp(stderr);
            return 1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    request_len = snprintf(request, sizeof(request),
                           "POST %s HTTP/1.1\r\nHost: localhost\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: %zu\r\n%s%s\r\n%s",
                           path, strlen(body), extra, *extra ? "\r\n" : "",
                           body);

    w = calloc(conns, sizeof(worker_t));
    t_start = now();
    for (i = 0; i < conns; i++) {
        pthread_create(&w[i].tid, NULL, run, &w[i]);
    }
    for (i = 0; i < conns; i++) {
        pthread_join(w[i].tid, NULL);
        n += w[i].n;
        non200 += w[i].non200;
        errors += w[i].errors;
    }
    all = malloc((n + 1) * sizeof(double));
    for (i = 0, k = 0; i < conns; i++) {
        memcpy(all + k, w[i].lat, w[i].n * sizeof(double));
        k += w[i].n;
    }
    qsort(all, n, sizeof(double), cmp);
    printf("requests %zu non200 %ld errors %ld rps %.0f p50_ms %.2f "
           "p99_ms %.2f\n", n, non200, errors, n / duration,
           n ? all[n / 2] * 1e3 : 0, n ? all[(size_t) (n * 0.99)] * 1e3 : 0);
    return 0;
}
