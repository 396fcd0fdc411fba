/**
 * Whether the module at `url` can run in a process or thread of its own: a bundle always can; its
 * TypeScript source only where Node strips types (Node 22.18 and later).
 */
export function canRunModuleFile(url: string): boolean {
  if (!url.endsWith('.ts')) return true;
  return Boolean((process.features as { typescript?: string }).typescript);
}
