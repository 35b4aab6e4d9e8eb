/* Intrusive circular doubly linked list (the node lives inside its owner). */
#ifndef FC_COMMON_LIST_H
#define FC_COMMON_LIST_H

#include <stddef.h>

typedef struct fc_list {
    struct fc_list *prev, *next;
} fc_list;

#define fc_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void fc_list_init(fc_list *l)
{
    l->prev = l->next = l;
}
static inline int fc_list_empty(const fc_list *l)
{
    return l->next == l;
}
/* A node is linked when it is not self-referencing; unlinked nodes must be fc_list_init'ed. */
static inline int fc_list_linked(const fc_list *n)
{
    return n->next != n && n->next != NULL;
}
static inline void fc_list_insert_tail(fc_list *head, fc_list *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}
static inline void fc_list_remove(fc_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#endif
