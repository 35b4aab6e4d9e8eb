/* flowcast entry point. */
#include <stdio.h>
int main(void)
{
    puts("flowcast " FC_VERSION);
    return 0;
}
