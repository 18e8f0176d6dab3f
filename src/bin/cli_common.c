/* cli_common: what the client subcommands of the partyd binary (connect,
 * rooms) parse the same way. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>

int party__cli_port_parse(const char *text) {
    char *end;
    long port;

    errno = 0;
    port = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || port < 1 || port > 65535)
        return -1;
    return (int)port;
}
