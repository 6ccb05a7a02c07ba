# shellcheck shell=sh
# %post: what %systemd_post does. On a first install ($1 = 1) apply the
# preset policy (enable it where the distribution's presets say so); after
# any install, reload systemd's units. Nothing when systemd does not run.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset mountwatchd.service >/dev/null 2>&1 || :
  fi
fi
