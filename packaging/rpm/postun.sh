# shellcheck shell=sh
# %postun: what %systemd_postun_with_restart does. Reload systemd's units;
# on upgrade ($1 >= 1) restart the service if it runs, with the new binary.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -ge 1 ]; then
    systemctl try-restart mountwatchd.service >/dev/null 2>&1 || :
  fi
fi
