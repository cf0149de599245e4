/* A growable byte buffer. */
#include <stdlib.h>
#include <string.h>

#define MIN_CAPACITY 64

/* The buffer: data, bytes used and bytes allocated. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} buffer_t;

struct node {
    struct node *next;
    buffer_t buf;
};

enum status { OK = 0, NO_MEMORY = 1 };

static size_t grow_to(size_t cap, size_t needed);

/* Create an empty buffer; NULL when out of memory. */
buffer_t *buffer_new(void)
{
    buffer_t *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->data = malloc(MIN_CAPACITY);
    if (b->data == NULL) {
        free(b);
        return NULL;
    }
    b->cap = MIN_CAPACITY;
    return b;
}

/*
 * Append len bytes, growing the allocation geometrically.
 * Returns NO_MEMORY and leaves the buffer unchanged when realloc fails.
 */
enum status buffer_append(buffer_t *b, const char *bytes, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = grow_to(b->cap, b->len + len);
        char *data = realloc(b->data, cap);
        if (data == NULL)
            return NO_MEMORY;
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, len);
    b->len += len;
    return OK;
}

static size_t grow_to(size_t cap, size_t needed)
{
    while (cap < needed)
        cap *= 2;
    return cap;
}

void buffer_free(buffer_t *b)
{
    if (b != NULL) {
        free(b->data);
        free(b);
    }
}
