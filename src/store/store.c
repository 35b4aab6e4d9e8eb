/* Backend-independent helpers of the store interface. */
#include "store/store.h"

void fc_change_clear(fc_change *c)
{
    fc_workflow_clear(&c->wf);
    fc_patch_clear(&c->patch);
}
