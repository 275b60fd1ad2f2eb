export const STAMP_FILE: string;
export function sourceStamp(root: string): [path: string, size: number, mtimeNs: string][];
export function distState(root: string): 'current' | 'missing' | 'stale';
