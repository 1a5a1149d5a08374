// The tests drive real Prometheus and promtool (Debian's `prometheus` package)
// and start their own redis-server. Install what is missing, when we can.
import { execSync } from 'node:child_process';

const missing = ['promtool', 'prometheus', 'redis-server'].filter((tool) => {
  try {
    execSync(`command -v ${tool}`, { stdio: 'ignore' });
    return false;
  } catch {
    return true;
  }
});
if (missing.length > 0) {
  const packages = [...new Set(missing.map((tool) => (tool === 'redis-server' ? 'redis-server' : 'prometheus')))];
  if (process.getuid?.() !== 0) {
    console.error(`missing ${missing.join(', ')}: install the Debian packages ${packages.join(' ')}`);
    process.exit(1);
  }
  console.log(`installing ${packages.join(' ')} (for ${missing.join(', ')})`);
  execSync('apt-get update -qq', { stdio: 'inherit' });
  execSync(`DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${packages.join(' ')}`, { stdio: 'inherit' });
}
