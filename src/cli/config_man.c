/* The flowcast(1) man page, written from the options table at build time
 * (`flowcast --man`, run by CMake), so the page cannot drift from --help. */
#include "cli/config.h"

#include <stdio.h>

/* Writes s as roff text: backslashes and hyphens escaped, and a line that
 * would start with a control character ('.' or '\'') made plain text. */
static void put_text(FILE *out, const char *s)
{
    int bol = 1;
    for (; *s; s++) {
        if (bol && (*s == '.' || *s == '\'')) fputs("\\&", out);
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else
            fputc(*s, out);
        bol = *s == '\n';
    }
}

static void put_options(FILE *out)
{
    fc_config_option o;
    for (size_t i = 0; fc_config_option_at(i, &o) == 0; i++) {
        fputs(".TP\n\\fB", out);
        put_text(out, "--");
        put_text(out, o.name);
        fputs("\\fR", out);
        if (o.metavar) {
            fputs(" \\fI", out);
            put_text(out, o.metavar);
            fputs("\\fR", out);
        }
        fputc('\n', out);
        put_text(out, o.help);
        put_text(out, o.range);
        fputs("\n.br\nEnvironment: \\fB", out);
        put_text(out, o.env);
        fputs("\\fR; default: ", out);
        put_text(out, o.def ? o.def : "(none)");
        fputs(".\n", out);
    }
}

void fc_config_man(FILE *out, const char *version, const char *usage)
{
    fputs(".TH FLOWCAST 1 \"\" \"flowcast ", out);
    put_text(out, version);
    fputs("\" \"User Commands\"\n"
          ".SH NAME\n"
          "flowcast \\- real\\-time workflow progress server and its command\\-line client\n"
          ".SH SYNOPSIS\n"
          ".B flowcast serve\n"
          "[\\fIoptions\\fR]\n"
          ".br\n"
          ".B flowcast\n"
          "[\\fB\\-\\-server\\fR \\fIURL\\fR[,\\fIURL\\fR...]] [\\fB\\-\\-token\\fR \\fITOKEN\\fR] "
          "\\fIcommand\\fR [\\fIargs\\fR]\n"
          ".SH DESCRIPTION\n"
          "\\fBflowcast serve\\fR keeps the state of workflows in a SQLite database (or, for "
          "a cluster of nodes, in PostgreSQL with a NATS bus between them) and pushes "
          "every change to subscribers over WebSocket, Server\\-Sent Events or long\\-poll; "
          "a REST API creates and updates them. The other commands are clients of a running "
          "server (\\fB\\-\\-server\\fR and \\fB\\-\\-token\\fR go before or after the command; "
          "\\fIhost:port\\fR means \\fIhttp://host:port\\fR) or work offline.\n"
          ".SH COMMANDS\n"
          ".nf\n",
          out);
    put_text(out, usage);
    fputs(".fi\n"
          ".SH SERVE OPTIONS\n"
          "Every option can also be set with its environment variable. Precedence: defaults < "
          "environment < flags. Use \\fB\\-\\-flag\\fR \\fIVALUE\\fR or "
          "\\fB\\-\\-flag\\fR=\\fIVALUE\\fR.\n",
          out);
    put_options(out);
    fputs(".SH ENDPOINTS\n"
          ".TP\n.B /healthz\n"
          "200 while the process answers; no credential needed.\n"
          ".TP\n.B /readyz\n"
          "200 \\fB{\"status\":\"ready\"}\\fR when the store answers and the listener is up; "
          "503 with the failing check and a reason otherwise (for load balancers); no credential "
          "needed.\n"
          ".SH SIGNALS\n"
          ".TP\n.B SIGTERM, SIGINT\n"
          "Stop accepting, close WebSockets with 1001, finish answers, exit 0.\n"
          ".TP\n.B SIGHUP\n"
          "Reload the TLS certificate and key (\\fBsystemctl reload flowcast\\fR).\n"
          ".SH FILES\n"
          ".TP\n.I /var/lib/flowcast/flowcast.db\n"
          "The database under the systemd unit \\fBflowcast.service\\fR.\n"
          ".TP\n.I /etc/flowcast/flowcast.env\n"
          "FLOWCAST_* settings read by the unit.\n"
          ".SH SEE ALSO\n"
          ".BR systemctl (1),\n"
          ".BR systemd.exec (5)\n",
          out);
}
