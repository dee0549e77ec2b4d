declare module '*.js' {
  const path: string
  export default path
}
declare module '*.css' {
  const path: string
  export default path
}
